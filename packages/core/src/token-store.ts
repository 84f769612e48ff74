/**
 * Where consistency tokens live between requests, keyed by a session or user key. Implementations
 * must max-merge: a key's LSN never moves backwards, even with concurrent writers on many instances.
 */
export interface TokenStore {
  /** The highest LSN recorded for `key`, or undefined when there is none (or it expired). */
  get(key: string): Promise<bigint | undefined>;
  /**
   * Raises `key`'s LSN to at least `lsn` (atomically), refreshing its time to live.
   * Resolves to the value stored after the merge.
   */
  raise(key: string, lsn: bigint, ttlMs: number): Promise<bigint>;
  /** Releases what the store owns (not a client handed to it). */
  close?(): Promise<void>;
}
