import type { RouterEventEmitter } from './events.js';
import { LagHistory, type LagHistoryStats } from './lag-history.js';

/**
 * A replica falls back below this share of `lagAlertMs` before it counts as recovered: a lag that
 * hovers around the threshold raises one alert, not one per probe.
 */
export const LAG_RECOVERY_RATIO = 0.5;

/** What the monitor needs of a replica: its name, whether it serves, and its lag now. */
export interface LagSubject {
  readonly name: string;
  readonly available: boolean;
}

interface Tracked {
  readonly history: LagHistory;
  behind: boolean;
}

const NO_HISTORY: LagHistoryStats = Object.freeze({ p50Ms: 0, p95Ms: 0, p99Ms: 0, windowMs: 0, samples: 0 });

/**
 * Lag over time: after each round of background probes it records every serving replica's lag in
 * that replica's sliding window, and raises a `lag` event when one crosses `lagAlertMs` and another
 * when it comes back well below it. Replicas that are down are not sampled (they have no lag to
 * speak of; `replica-down` tells about them).
 */
export class LagMonitor<R extends LagSubject> {
  readonly #alertMs: number | false;
  readonly #events: RouterEventEmitter;
  readonly #lagOf: (replica: R) => { bytes: number; ms: number } | undefined;
  // Weak: a removed replica's history goes with it.
  readonly #tracked = new WeakMap<R, Tracked>();

  constructor(
    alertMs: number | false,
    events: RouterEventEmitter,
    lagOf: (replica: R) => { bytes: number; ms: number } | undefined,
  ) {
    this.#alertMs = alertMs;
    this.#events = events;
    this.#lagOf = lagOf;
  }

  /** Records the current lag of every serving replica in `replicas`. */
  sample(replicas: Iterable<R>, now = performance.now()): void {
    for (const replica of replicas) {
      if (!replica.available) continue;
      const lag = this.#lagOf(replica);
      if (lag === undefined) continue;
      const tracked = this.#trackedOf(replica);
      tracked.history.record(lag.ms, now);
      if (this.#alertMs !== false) this.#alert(replica, tracked, lag, this.#alertMs);
    }
  }

  /** The replica's lag percentiles over the window. */
  history(replica: R, now = performance.now()): LagHistoryStats {
    const tracked = this.#tracked.get(replica);
    return tracked ? tracked.history.stats(now) : { ...NO_HISTORY };
  }

  #trackedOf(replica: R): Tracked {
    let tracked = this.#tracked.get(replica);
    if (tracked === undefined) {
      tracked = { history: new LagHistory(), behind: false };
      this.#tracked.set(replica, tracked);
    }
    return tracked;
  }

  #alert(replica: R, tracked: Tracked, lag: { bytes: number; ms: number }, thresholdMs: number): void {
    const lagMs = Math.round(lag.ms);
    if (!tracked.behind && lag.ms >= thresholdMs) {
      tracked.behind = true;
      this.#events.stateChange(
        'lag',
        { replica: replica.name, state: 'behind', lagMs, lagBytes: lag.bytes, thresholdMs },
        () =>
          `replica "${replica.name}" is ${lagMs} ms (${lag.bytes} bytes) behind the primary (lagAlertMs ${thresholdMs})`,
      );
    } else if (tracked.behind && lag.ms <= thresholdMs * LAG_RECOVERY_RATIO) {
      tracked.behind = false;
      this.#events.stateChange(
        'lag',
        { replica: replica.name, state: 'recovered', lagMs, lagBytes: lag.bytes, thresholdMs },
        () => `replica "${replica.name}" caught up: ${lagMs} ms behind the primary (lagAlertMs ${thresholdMs})`,
      );
    }
  }
}
