/** Lag percentiles over the recent past, as `stats()` reports them. */
export interface LagHistoryStats {
  /** Nearest-rank percentiles of the lag samples in the window, in ms; 0 when there are none. */
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** How far back the samples reach, in ms: at most the configured window, less while it fills. */
  windowMs: number;
  /** Samples in the window (one per lag probe round). */
  samples: number;
}

/** Five minutes: long enough to see a spike after the fact, short enough to forget a fixed one. */
export const LAG_WINDOW_MS = 300_000;
/** Bounds memory when probing is fast: at 1 s probes, five minutes fit 16 times over. */
const LAG_CAPACITY = 4096;

/**
 * One replica's measured lag over a sliding time window. Recording is O(1) and allocation-free (two
 * preallocated rings); percentiles are sorted only when `stats()` asks, like the latency tracker's.
 */
export class LagHistory {
  readonly #windowMs: number;
  readonly #lags: Float64Array;
  readonly #times: Float64Array;
  #sorted: Float64Array | undefined;
  #next = 0;
  #count = 0;

  constructor(windowMs = LAG_WINDOW_MS, capacity = LAG_CAPACITY) {
    this.#windowMs = windowMs;
    this.#lags = new Float64Array(capacity);
    this.#times = new Float64Array(capacity);
  }

  /** Adds one measurement taken at `at` (ms, the router's monotonic clock). */
  record(lagMs: number, at: number): void {
    if (!(lagMs >= 0 && lagMs < Number.POSITIVE_INFINITY)) return;
    this.#lags[this.#next] = lagMs;
    this.#times[this.#next] = at;
    this.#next = this.#next + 1 === this.#lags.length ? 0 : this.#next + 1;
    if (this.#count < this.#lags.length) this.#count++;
  }

  /** Percentiles over the samples taken since `now - windowMs`. */
  stats(now: number): LagHistoryStats {
    const capacity = this.#lags.length;
    const since = now - this.#windowMs;
    this.#sorted ??= new Float64Array(capacity);
    let n = 0;
    let oldest = now;
    // Newest first: samples are in time order, so the first one too old ends the scan.
    for (let i = 0, slot = this.#next; i < this.#count; i++) {
      slot = slot === 0 ? capacity - 1 : slot - 1;
      const at = this.#times[slot] as number;
      if (at < since) break;
      this.#sorted[n++] = this.#lags[slot] as number;
      oldest = at;
    }
    if (n === 0) return { p50Ms: 0, p95Ms: 0, p99Ms: 0, windowMs: 0, samples: 0 };
    const sorted = this.#sorted.subarray(0, n);
    sorted.sort();
    return {
      p50Ms: rank(sorted, 0.5),
      p95Ms: rank(sorted, 0.95),
      p99Ms: rank(sorted, 0.99),
      windowMs: Math.max(0, now - oldest),
      samples: n,
    };
  }

  /** Forgets every sample: the replica was removed, or another server answers for it now. */
  clear(): void {
    this.#next = 0;
    this.#count = 0;
  }
}

function rank(sorted: Float64Array, p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0;
}
