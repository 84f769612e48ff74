/**
 * The primary's WAL insert positions as sampled over time, so a replica's lag can be told in
 * milliseconds as "how long ago the primary passed the position this replica has replayed" —
 * unlike `now() - pg_last_xact_replay_timestamp()`, which grows on an idle primary with nothing to
 * replay.
 */
export class PrimaryLsnHistory {
  readonly #capacity: number;
  // Parallel arrays, appended only when the position moves: positions strictly increase.
  #lsns: bigint[] = [];
  #firstSeenAt: number[] = [];
  #latestAt = 0;

  constructor(capacity = 4096) {
    this.#capacity = capacity;
  }

  record(lsn: bigint, at: number): void {
    const last = this.#lsns.at(-1);
    this.#latestAt = Math.max(this.#latestAt, at);
    // A position seen again, or an older one from a probe that finished late, adds nothing.
    if (last !== undefined && lsn <= last) return;
    this.#lsns.push(lsn);
    this.#firstSeenAt.push(at);
    if (this.#lsns.length > this.#capacity) {
      const drop = this.#lsns.length - this.#capacity;
      this.#lsns.splice(0, drop);
      this.#firstSeenAt.splice(0, drop);
    }
  }

  /**
   * Starts over from `lsn`: the primary's position went backwards, so another server answers for it
   * now (a failover to a promoted standby), and positions of the old one say nothing about its lag.
   */
  restart(lsn: bigint, at: number): void {
    this.#lsns = [lsn];
    this.#firstSeenAt = [at];
    this.#latestAt = at;
  }

  get latestLsn(): bigint | undefined {
    return this.#lsns.at(-1);
  }

  /** When the latest sample was taken (ms, on the router's clock), or 0 before any. */
  get latestAt(): number {
    return this.#latestAt;
  }

  /**
   * When the primary was first seen beyond `lsn`, or undefined if it never was (caught up).
   * Older than the history reaches: its oldest sample, so lag is under- rather than over-stated.
   */
  passedAt(lsn: bigint): number | undefined {
    const lsns = this.#lsns;
    let lo = 0;
    let hi = lsns.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((lsns[mid] as bigint) > lsn) hi = mid;
      else lo = mid + 1;
    }
    return lo < lsns.length ? this.#firstSeenAt[lo] : undefined;
  }

  /** Lag of a replica whose replay position was `replayLsn` at time `sampledAt`. */
  lagOf(replayLsn: bigint, sampledAt: number): { bytes: number; ms: number } | undefined {
    const latest = this.latestLsn;
    if (latest === undefined) return undefined;
    if (replayLsn >= latest) return { bytes: 0, ms: 0 };
    const passed = this.passedAt(replayLsn);
    return {
      bytes: Number(latest - replayLsn),
      ms: passed === undefined ? 0 : Math.max(0, sampledAt - passed),
    };
  }
}
