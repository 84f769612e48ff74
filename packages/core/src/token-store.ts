/** What a token store knows of one key. */
export interface TokenLookup {
  /** The highest LSN recorded for the key; undefined when there is none (or it expired, or was lost). */
  readonly lsn: bigint | undefined;
  /**
   * Present while the store may have forgotten this key because it lost data recently (restarted
   * empty, flushed, failed over to an empty node). Whatever the key held was at most the primary's
   * position when the loss was found: `floor`, once an instance has recorded it (undefined before:
   * the router then reads the primary's position and records it with `recordLossFloor`).
   */
  readonly loss?: {
    readonly epoch: string;
    readonly floor: bigint | undefined;
    /** This instance had read the data before the loss: certainly a loss, not a first use. */
    readonly confirmed?: boolean;
  };
}

/**
 * Where consistency tokens live between requests, keyed by a session or user key. Implementations
 * must max-merge: a key's LSN never moves backwards, even with concurrent writers on many instances.
 */
export interface TokenStore {
  /**
   * What the store holds for `key`: the highest LSN recorded (undefined when none), or a
   * {@link TokenLookup} when the store can tell it lost data.
   * @param ttlMs the router's token time to live: a loss older than that no longer matters, since
   *   every key it could have dropped would have expired by now. @default 3_600_000 (the router's)
   */
  get(key: string, ttlMs?: number): Promise<bigint | undefined | TokenLookup>;
  /**
   * Raises `key`'s LSN to at least `lsn` (atomically), refreshing its time to live.
   * Resolves to the value stored after the merge.
   */
  raise(key: string, lsn: bigint, ttlMs: number): Promise<bigint>;
  /** Records the floor of a loss reported by `get`, so other instances need not ask the primary. */
  recordLossFloor?(key: string, epoch: string, floor: bigint): Promise<void>;
  /** Warnings about the store's setup that can lose tokens (an eviction policy, say); called once. */
  check?(): Promise<string[]>;
  /** Releases what the store owns (not a client handed to it). */
  close?(): Promise<void>;
}
