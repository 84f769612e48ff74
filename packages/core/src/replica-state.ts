import { CoalescedProbe } from './coalesced-probe.js';
import { LatencyTracker } from './latency.js';
import type { RouterNode } from './options.js';

export type ReplicaHealth = 'up' | 'down' | 'probing';

/** What a replica probe tells: its replay position, and whether it still is a standby. */
export interface ReplayObservation {
  readonly replayLsn: bigint | undefined;
  readonly inRecovery: boolean;
  readonly at: number;
}

/** Everything the router tracks about one replica. Mutable on purpose: it sits on the read path. */
export class ReplicaState<C> {
  readonly node: RouterNode<C>;
  readonly latency = new LatencyTracker();
  readonly replayProbe: CoalescedProbe<ReplayObservation>;
  /** What a read running here is told about where it runs. */
  readonly target: { readonly name: string; readonly role: 'replica' };
  health: ReplicaHealth = 'probing';
  inFlight = 0;
  served = 0;
  failed = 0;
  /** Last replay position we can vouch for; forgotten whenever the replica may have restarted. */
  replayLsn: bigint | undefined;
  replayAt = 0;
  /** Consecutive failed readmission probes. */
  attempt = 0;
  readmissionTimer: NodeJS.Timeout | undefined;
  /** Refused for good: not a standby, or of another cluster. */
  misconfigured: Error | undefined;
  removed = false;
  #drained: (() => void) | undefined;

  constructor(node: RouterNode<C>, probe: (state: ReplicaState<C>) => Promise<ReplayObservation>) {
    this.node = node;
    this.target = Object.freeze({ name: node.name, role: 'replica' as const });
    this.replayProbe = new CoalescedProbe(() => probe(this));
  }

  get name(): string {
    return this.node.name;
  }

  get weight(): number {
    return this.node.weight ?? 1;
  }

  get latencyScoreMs(): number {
    return this.latency.peakEwmaMs;
  }

  get averageLatencyMs(): number {
    return this.latency.ewmaMs;
  }

  get client(): C {
    return this.node.client;
  }

  /** Up, in the list, and not refused. */
  get available(): boolean {
    return this.health === 'up' && !this.removed;
  }

  observe(observation: ReplayObservation): void {
    // A probe that started before a failure may finish after it: never resurrect a forgotten position.
    if (this.health === 'down') return;
    if (observation.replayLsn === undefined) return;
    // The later-started probe wins, even with a lower position: that only happens after a restart.
    if (observation.at >= this.replayAt) {
      this.replayLsn = observation.replayLsn;
      this.replayAt = observation.at;
    }
  }

  forgetReplay(): void {
    this.replayLsn = undefined;
    this.replayAt = 0;
  }

  /** Resolves once the last in-flight read has finished (used when the replica is removed). */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  readFinished(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.#drained) {
      this.#drained();
      this.#drained = undefined;
    }
  }
}
