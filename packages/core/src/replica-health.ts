import { type BackoffOptions, backoffDelay } from './backoff.js';
import type { BalancerCandidate } from './balancers.js';
import { CoalescedProbe } from './coalesced-probe.js';
import { describeFailure } from './connection-errors.js';
import { LaglessError } from './errors.js';
import type { RouterEventEmitter } from './events.js';
import { LatencyTracker } from './latency.js';
import { formatLsn } from './lsn.js';
import type { RouterNode } from './options.js';
import type { NodeProbes, ReplayState } from './probes.js';

export type ReplicaHealthState = 'up' | 'down' | 'probing';

/** Why a replica is not serving, as `ready()` and the logs tell it. */
export interface ReplicaFailure {
  readonly code: string | undefined;
  readonly reason: string;
}

/**
 * One replica as the router sees it. The read loop reads its fields and counts reads through
 * `beginRead` / `endRead`; only {@link ReplicaHealth} changes its health.
 */
export class Replica<C> implements BalancerCandidate {
  readonly node: RouterNode<C>;
  readonly latency = new LatencyTracker();
  /** What a read running here is told about where it runs. */
  readonly target: { readonly name: string; readonly role: 'replica' };
  /** Replay probes shared by every waiting reader and the monitor. */
  readonly replayProbe: CoalescedProbe<ReplayState>;
  readonly probes: NodeProbes;
  #inFlight = 0;
  #served = 0;
  #failed = 0;
  #drained: (() => void) | undefined;
  // Health: written by ReplicaHealth only.
  health: ReplicaHealthState = 'probing';
  /** Bumped whenever it is ejected or refused: what it serves afterwards may be older than before. */
  incarnation = 0;
  replayLsn: bigint | undefined;
  replayAt = 0;
  attempt = 0;
  readmissionTimer: NodeJS.Timeout | undefined;
  misconfigured: LaglessError | undefined;
  removed = false;
  lastFailure: ReplicaFailure | undefined;
  /** The `system_identifier` it reported at its last admission probe. */
  reportedIdentity: string | undefined;

  constructor(node: RouterNode<C>, probes: NodeProbes, probeReplay: (replica: Replica<C>) => Promise<ReplayState>) {
    this.node = node;
    this.probes = probes;
    this.target = Object.freeze({ name: node.name, role: 'replica' as const });
    this.replayProbe = new CoalescedProbe(() => probeReplay(this));
  }

  get name(): string {
    return this.node.name;
  }

  get weight(): number {
    return this.node.weight ?? 1;
  }

  get client(): C {
    return this.node.client;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get served(): number {
    return this.#served;
  }

  get failed(): number {
    return this.#failed;
  }

  get latencyScoreMs(): number {
    return this.latency.peakEwmaMs;
  }

  /** What the least-connections tie rule compares: decays while the replica gets no reads. */
  get averageLatencyMs(): number {
    return this.latency.idleDecayedEwmaMs;
  }

  /** Up, in the list, and not refused. */
  get available(): boolean {
    return this.health === 'up' && !this.removed;
  }

  beginRead(): void {
    this.#inFlight++;
  }

  /** @param latencyMs how long a successful read took; undefined when it failed. */
  endRead(latencyMs: number | undefined): void {
    if (latencyMs === undefined) this.#failed++;
    else {
      this.latency.record(latencyMs);
      this.#served++;
    }
    this.#inFlight--;
    if (this.#inFlight === 0 && this.#drained) {
      this.#drained();
      this.#drained = undefined;
    }
  }

  /** Resolves once the last in-flight read has finished (used when the replica is removed). */
  drained(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }
}

export interface ReplicaHealthOptions {
  readonly readmission: Readonly<BackoffOptions>;
  readonly random: () => number;
  readonly onReplicaError: ((error: unknown, replica: string) => void) | undefined;
}

/**
 * Admits, ejects and readmits replicas. Admission checks a replica is a standby of the expected
 * cluster; while that identity is not known yet (the primary is away at start-up), a replica that
 * answered waits as `probing` until `identityKnown()` decides for it.
 */
export class ReplicaHealth<C> {
  readonly #replicas = new Map<string, Replica<C>>();
  readonly #options: ReplicaHealthOptions;
  readonly #events: RouterEventEmitter;
  readonly #probesFor: (node: RouterNode<C>) => NodeProbes;
  readonly #expectedIdentity: () => string | undefined;
  #closed = false;

  constructor(
    options: ReplicaHealthOptions,
    events: RouterEventEmitter,
    probesFor: (node: RouterNode<C>) => NodeProbes,
    expectedIdentity: () => string | undefined,
  ) {
    this.#options = options;
    this.#events = events;
    this.#probesFor = probesFor;
    this.#expectedIdentity = expectedIdentity;
  }

  get size(): number {
    return this.#replicas.size;
  }

  values(): IterableIterator<Replica<C>> {
    return this.#replicas.values();
  }

  get(name: string): Replica<C> | undefined {
    return this.#replicas.get(name);
  }

  add(node: RouterNode<C>): Replica<C> {
    const replica = new Replica(node, this.#probesFor(node), (r) => this.#probeReplay(r));
    this.#replicas.set(node.name, replica);
    return replica;
  }

  /** Out of rotation at once; resolves when its in-flight reads have finished. */
  async remove(replica: Replica<C>): Promise<void> {
    replica.removed = true;
    clearTimeout(replica.readmissionTimer);
    replica.readmissionTimer = undefined;
    await replica.drained();
    if (this.#replicas.get(replica.name) === replica) this.#replicas.delete(replica.name);
  }

  /** Checks a replica's identity and, if it passes, puts it in rotation. */
  async admit(replica: Replica<C>): Promise<void> {
    if (replica.removed || replica.misconfigured || this.#closed) return;
    if (replica.health === 'down') replica.health = 'probing';
    const at = Date.now();
    let identity: Awaited<ReturnType<NodeProbes['identity']>>;
    try {
      identity = await replica.probes.identity();
    } catch (error) {
      this.eject(replica, error);
      return;
    }
    if (replica.removed || replica.misconfigured || this.#closed) return;
    if (!identity.inRecovery) {
      this.#refuse(replica, 'is not in recovery: it is a primary, not a replica');
      return;
    }
    replica.reportedIdentity = identity.systemIdentifier;
    replica.lastFailure = undefined;
    // A probe that started before a failure may finish after it: only the latest start counts.
    if (at >= replica.replayAt) {
      replica.replayLsn = identity.replayLsn;
      replica.replayAt = identity.replayLsn === undefined ? 0 : at;
    }
    this.#decide(replica);
  }

  /**
   * The cluster's identity became known or changed: replicas waiting for it are admitted or refused,
   * and replicas admitted on a provisional identity that turns out wrong are refused.
   */
  identityKnown(): void {
    for (const replica of this.#replicas.values()) {
      if (replica.misconfigured || replica.removed || replica.reportedIdentity === undefined) continue;
      if (replica.health === 'down') continue;
      this.#decide(replica);
    }
  }

  /** Out of rotation at once, its replay position forgotten, readmission scheduled with backoff. */
  eject(replica: Replica<C>, error: unknown): void {
    // A standby restarted after a crash can serve reads before it re-reaches its old position.
    forgetReplay(replica);
    replica.incarnation++;
    if (replica.misconfigured || replica.removed || this.#closed) return;
    const wasUp = replica.health === 'up';
    const firstFailure = replica.attempt === 0;
    const { code, message } = describeFailure(error);
    replica.lastFailure = { code, reason: message };
    replica.health = 'down';
    if (replica.readmissionTimer !== undefined) return;
    const delay = backoffDelay(replica.attempt, this.#options.readmission, this.#options.random);
    replica.attempt++;
    replica.readmissionTimer = setTimeout(() => {
      replica.readmissionTimer = undefined;
      void this.admit(replica);
    }, delay);
    replica.readmissionTimer.unref();
    if (wasUp || firstFailure) {
      this.#events.stateChange(
        'replica-down',
        { replica: replica.name, error, code, reason: message },
        () =>
          `replica "${replica.name}" is down: ${message}${code ? ` (${code})` : ''}; its reads go elsewhere, next check in ${Math.round(delay)} ms`,
      );
      try {
        this.#options.onReplicaError?.(error, replica.name);
      } catch {
        // The hook is for observing; it cannot change routing.
      }
    }
  }

  close(): void {
    this.#closed = true;
    for (const replica of this.#replicas.values()) {
      clearTimeout(replica.readmissionTimer);
      replica.readmissionTimer = undefined;
    }
  }

  #decide(replica: Replica<C>): void {
    const expected = this.#expectedIdentity();
    if (expected === undefined) {
      // Answered, but nothing to compare with yet: not in rotation until the identity is known.
      replica.health = 'probing';
      return;
    }
    if (replica.reportedIdentity !== expected) {
      this.#refuse(
        replica,
        `belongs to another cluster (system identifier ${replica.reportedIdentity}, expected ${expected})`,
      );
      return;
    }
    if (replica.health === 'up') return;
    const recovered = replica.attempt > 0;
    replica.health = 'up';
    replica.attempt = 0;
    this.#events.stateChange(
      'replica-up',
      { replica: replica.name, replayLsn: replica.replayLsn === undefined ? undefined : formatLsn(replica.replayLsn) },
      recovered ? () => `replica "${replica.name}" is up again` : undefined,
    );
  }

  #refuse(replica: Replica<C>, reason: string): void {
    const error = new LaglessError('REPLICA_MISCONFIGURED', `replica "${replica.name}" ${reason}`, {
      context: { replica: replica.name },
    });
    replica.misconfigured = error;
    replica.incarnation++;
    replica.lastFailure = { code: 'REPLICA_MISCONFIGURED', reason: error.message };
    replica.health = 'down';
    forgetReplay(replica);
    clearTimeout(replica.readmissionTimer);
    replica.readmissionTimer = undefined;
    this.#events.stateChange(
      'replica-misconfigured',
      { replica: replica.name, error },
      () => `${error.message}; it is refused and takes no reads`,
    );
  }

  async #probeReplay(replica: Replica<C>): Promise<ReplayState> {
    const at = Date.now();
    let state: ReplayState;
    try {
      state = await replica.probes.replay();
    } catch (error) {
      this.eject(replica, error);
      throw error;
    }
    if (!state.inRecovery) {
      this.#refuse(replica, 'left recovery (promoted?): it is no longer a replica');
    } else if (replica.health !== 'down' && state.replayLsn !== undefined && at >= replica.replayAt) {
      // Never resurrect a position forgotten by a failure that happened while the probe ran; the
      // later-started probe wins, even with a lower position (that only happens after a restart).
      replica.replayLsn = state.replayLsn;
      replica.replayAt = at;
    }
    return state;
  }
}

function forgetReplay(replica: Replica<unknown>): void {
  replica.replayLsn = undefined;
  replica.replayAt = 0;
}
