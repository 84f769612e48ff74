import { invalidOption, LaglessError } from './errors.js';

export interface LatencyTrackerOptions {
  /**
   * Time constant of the moving averages in milliseconds: a sample's influence falls to 1/e after
   * this long. Shorter reacts faster to a replica recovering; longer is steadier.
   * @default 10_000
   */
  decayMs?: number;
  /**
   * How many of the most recent samples percentiles are computed over (at most 1 048 576).
   * @default 512
   */
  window?: number;
  /**
   * Monotonic clock in milliseconds; inject one to test decay without waiting.
   * @default performance.now
   */
  now?: () => number;
}

export interface LatencyPercentiles {
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

const MAX_WINDOW = 1 << 20;
const KNOWN_OPTIONS = new Set(['decayMs', 'window', 'now']);

/**
 * Latency of one replica: a peak-sensitive EWMA for load balancing, a plain EWMA and percentiles
 * for stats. Recording is O(1) and allocation-free because it runs on every read; percentiles are
 * sorted only when asked for.
 */
export class LatencyTracker {
  readonly #decayMs: number;
  readonly #now: () => number;
  readonly #samples: Float64Array;
  #sorted: Float64Array | undefined;
  #next = 0;
  #count = 0;
  #peakEwma = 0;
  #ewma = 0;
  #lastAt = 0;

  constructor(options: LatencyTrackerOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('LatencyTracker.options', 'an object', options);
    }
    for (const key of Object.keys(options)) {
      if (!KNOWN_OPTIONS.has(key)) {
        // A misspelt option would otherwise silently fall back to its default.
        throw new LaglessError(
          'INVALID_OPTION',
          `Unknown LatencyTracker option ${key}; known options are ${[...KNOWN_OPTIONS].join(', ')}`,
          { context: { option: key } },
        );
      }
    }
    const { decayMs = 10_000, window = 512, now = () => performance.now() } = options;
    if (typeof decayMs !== 'number' || !(decayMs > 0 && decayMs < Number.POSITIVE_INFINITY)) {
      throw invalidOption('LatencyTracker.decayMs', 'a finite number of milliseconds > 0', decayMs);
    }
    if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW) {
      throw invalidOption('LatencyTracker.window', `an integer from 1 to ${MAX_WINDOW}`, window);
    }
    if (typeof now !== 'function') throw invalidOption('LatencyTracker.now', 'a function returning milliseconds', now);
    this.#decayMs = decayMs;
    this.#now = now;
    this.#samples = new Float64Array(window);
  }

  /** Adds one read's duration. Negative, NaN and infinite values are ignored: they come from broken clocks. */
  record(ms: number): void {
    if (!(ms >= 0 && ms < Number.POSITIVE_INFINITY)) return;
    const at = this.#now();
    if (this.#count === 0) {
      this.#peakEwma = ms;
      this.#ewma = ms;
    } else {
      // A clock that steps backwards must not give a weight above 1.
      const elapsed = at > this.#lastAt ? at - this.#lastAt : 0;
      const w = Math.exp(-elapsed / this.#decayMs);
      this.#ewma = this.#ewma * w + ms * (1 - w);
      // A slow sample is believed at once, a fast one only gradually: a replica that starts to
      // struggle is avoided immediately, but one good read does not hide a bad streak.
      const decayed = this.#peakEwma * w;
      this.#peakEwma = ms > decayed ? ms : decayed + ms * (1 - w);
    }
    this.#lastAt = at;
    this.#samples[this.#next] = ms;
    this.#next = this.#next + 1 === this.#samples.length ? 0 : this.#next + 1;
    this.#count++;
  }

  /**
   * Finagle-style peak EWMA in milliseconds; 0 before the first sample. Between samples it decays
   * towards 0: a replica passed over for being slow must look fast again after a while, or it would
   * never be tried again and its score never corrected (a slow replica gets one read in every few
   * `decayMs`, and each re-raises its score at once).
   */
  get peakEwmaMs(): number {
    if (this.#count === 0) return 0;
    const idle = this.#now() - this.#lastAt;
    return idle > 0 ? this.#peakEwma * Math.exp(-idle / this.#decayMs) : this.#peakEwma;
  }

  /** Time-decayed EWMA in milliseconds without the peak rule; 0 before the first sample. */
  get ewmaMs(): number {
    return this.#ewma;
  }

  /**
   * The EWMA, decaying towards 0 between samples as the peak score does: what balancing compares.
   * A replica left out of ties for being slow gets no reads, hence no samples; without this its
   * average would stay frozen at its worst and it would never be tried again.
   */
  get idleDecayedEwmaMs(): number {
    if (this.#count === 0) return 0;
    const idle = this.#now() - this.#lastAt;
    return idle > 0 ? this.#ewma * Math.exp(-idle / this.#decayMs) : this.#ewma;
  }

  /** Samples recorded since construction or the last reset (not capped by the window). */
  get count(): number {
    return this.#count;
  }

  /** Nearest-rank percentiles over the last `window` samples; all zero when there are none. */
  percentiles(): LatencyPercentiles {
    const n = Math.min(this.#count, this.#samples.length);
    if (n === 0) return { p50Ms: 0, p95Ms: 0, p99Ms: 0 };
    this.#sorted ??= new Float64Array(this.#samples.length);
    // Sort a copy: the ring buffer's order is what tells the oldest sample to overwrite.
    const sorted = this.#sorted.subarray(0, n);
    sorted.set(this.#samples.subarray(0, n));
    sorted.sort();
    return { p50Ms: rank(sorted, 0.5), p95Ms: rank(sorted, 0.95), p99Ms: rank(sorted, 0.99) };
  }

  reset(): void {
    this.#next = 0;
    this.#count = 0;
    this.#peakEwma = 0;
    this.#ewma = 0;
    this.#lastAt = 0;
  }
}

function rank(sorted: Float64Array, p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0;
}
