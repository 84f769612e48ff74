import { type BackoffOptions, backoffDelay } from './backoff.js';
import { LaglessError, type LaglessErrorCode } from './errors.js';
import type { RouterEventEmitter } from './events.js';
import type { PrimaryTracker } from './primary.js';
import type { ReplicaHealth } from './replica-health.js';

export interface ClusterWatchOptions {
  /** Pins the cluster's identity: a primary or replica reporting another is refused. */
  readonly systemIdentifier: string | undefined;
  readonly probeIntervalMs: number;
  /** Schedule of retries of the primary's start-up check while it does not answer. */
  readonly retry: Readonly<BackoffOptions>;
  readonly random: () => number;
  /** Called after each round of background probes, settled or not (lag is sampled then). */
  readonly afterRound?: (() => void) | undefined;
}

/** One node that did not pass its check, as `ready()` reports it. */
export interface NodeFailure {
  readonly node: string;
  readonly role: 'primary' | 'replica';
  readonly code: string | undefined;
  readonly reason: string;
}

/**
 * Start-up checks, the cluster's identity, and the background probes. Start-up runs once, at
 * construction, checking the primary and every replica at the same time; reads wait at most for
 * that first round. When the primary does not answer, replicas that are standbys and agree on one
 * system identifier (or match the pinned one) are admitted anyway, the primary's check is retried
 * with backoff in the background, and once it answers every replica is checked against it.
 */
export class ClusterWatch<C> {
  readonly #options: ClusterWatchOptions;
  readonly #events: RouterEventEmitter;
  readonly #primary: PrimaryTracker;
  readonly #health: ReplicaHealth<C>;
  /** What the primary reported, once it answered (and matched the pin, if any). */
  #confirmed: string | undefined;
  /** Agreed on by the replicas while the primary has not answered. */
  #provisional: string | undefined;
  #primaryMismatch: LaglessError | undefined;
  readonly #firstRound: Promise<void>;
  #firstRoundDone = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryAttempt = 0;
  #checkingPrimary: Promise<void> | undefined;
  #monitorTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    options: ClusterWatchOptions,
    events: RouterEventEmitter,
    primary: PrimaryTracker,
    health: ReplicaHealth<C>,
  ) {
    this.#options = options;
    this.#events = events;
    this.#primary = primary;
    this.#health = health;
    primary.onRecovered = () => {
      // The address may now reach another server (a failover): check who answers.
      if (this.#firstRoundDone) void this.#checkPrimary();
    };
    this.#firstRound = this.#runFirstRound();
    this.#scheduleMonitor();
  }

  /** The cluster's `system_identifier`: pinned, else the primary's, else the replicas' agreed one. */
  get identity(): string | undefined {
    return this.#options.systemIdentifier ?? this.#confirmed ?? this.#provisional;
  }

  /** True once the primary confirmed the identity. */
  get confirmed(): boolean {
    return this.#confirmed !== undefined;
  }

  get firstRoundDone(): boolean {
    return this.#firstRoundDone;
  }

  /** Resolves when the first round of checks is over, whatever its outcome. */
  firstRound(): Promise<void> {
    return this.#firstRound;
  }

  /** Every node not serving now, and why. */
  failures(): NodeFailure[] {
    const failures: NodeFailure[] = [];
    const primary = this.#primary;
    if (this.#primaryMismatch) {
      failures.push({
        node: primary.name,
        role: 'primary',
        code: 'PRIMARY_MISCONFIGURED',
        reason: this.#primaryMismatch.message,
      });
    } else if (primary.status !== 'up') {
      const failure = primary.lastFailure;
      failures.push({
        node: primary.name,
        role: 'primary',
        code: failure?.code,
        reason: failure?.reason ?? 'not checked yet',
      });
    }
    for (const replica of this.#health.values()) {
      if (replica.available || replica.removed) continue;
      const failure = replica.lastFailure;
      failures.push({
        node: replica.name,
        role: 'replica',
        code: failure?.code,
        reason:
          failure?.reason ??
          (replica.reportedIdentity !== undefined && this.identity === undefined
            ? 'answered, but the cluster identity is unknown while the primary is away'
            : 'not checked yet'),
      });
    }
    return failures;
  }

  /** Resolves once the first round is over and every node passed; else rejects naming each failure. */
  async ready(): Promise<void> {
    await this.#firstRound;
    const failures = this.failures();
    if (failures.length === 0) return;
    const code = readyErrorCode(failures);
    const lines = failures.map(
      (failure) => `${failure.role} "${failure.node}": ${failure.reason}${failure.code ? ` (${failure.code})` : ''}`,
    );
    throw new LaglessError(code, `lagless is not ready: ${lines.join('; ')}`, {
      context: {
        failures,
        replicas: failures.filter((failure) => failure.role === 'replica').map((failure) => failure.node),
      },
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#monitorTimer);
    this.#retryTimer = undefined;
    this.#monitorTimer = undefined;
  }

  async #runFirstRound(): Promise<void> {
    if (this.#health.size === 0) this.#events.emit('no-replicas', {});
    const replicas = [...this.#health.values()];
    // At the same time: a primary that does not answer must not hold the replicas back.
    await Promise.all([this.#checkPrimary(), ...replicas.map((replica) => this.#health.admit(replica))]);
    if (this.identity === undefined) this.#adoptProvisionalIdentity();
    this.#firstRoundDone = true;
  }

  /** The replicas that answered as standbys agree on an identity: a strict majority of them. */
  #adoptProvisionalIdentity(): void {
    const counts = new Map<string, number>();
    let answered = 0;
    for (const replica of this.#health.values()) {
      if (replica.reportedIdentity === undefined || replica.misconfigured) continue;
      answered++;
      counts.set(replica.reportedIdentity, (counts.get(replica.reportedIdentity) ?? 0) + 1);
    }
    for (const [identity, count] of counts) {
      if (count * 2 > answered) {
        this.#provisional = identity;
        this.#health.identityKnown();
        return;
      }
    }
  }

  #checkPrimary(): Promise<void> {
    this.#checkingPrimary ??= this.#runPrimaryCheck().finally(() => {
      this.#checkingPrimary = undefined;
    });
    return this.#checkingPrimary;
  }

  async #runPrimaryCheck(): Promise<void> {
    let reported: string;
    try {
      reported = (await this.#primary.identity()).systemIdentifier;
    } catch {
      this.#scheduleRetry();
      return;
    }
    this.#retryAttempt = 0;
    const pinned = this.#options.systemIdentifier;
    if (pinned !== undefined && reported !== pinned) {
      if (this.#primaryMismatch === undefined) {
        this.#primaryMismatch = new LaglessError(
          'PRIMARY_MISCONFIGURED',
          `the primary "${this.#primary.name}" belongs to another cluster (system identifier ${reported}, pinned ${pinned})`,
          { context: { primary: this.#primary.name } },
        );
        const error = this.#primaryMismatch;
        this.#events.stateChange('primary-misconfigured', { primary: this.#primary.name, error }, () => error.message);
      }
      return;
    }
    this.#primaryMismatch = undefined;
    const changed = this.#confirmed !== reported;
    this.#confirmed = reported;
    this.#provisional = undefined;
    if (changed) this.#health.identityKnown();
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const delay = backoffDelay(this.#retryAttempt++, this.#options.retry, this.#options.random);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#checkPrimary();
    }, delay);
    this.#retryTimer.unref();
  }

  #scheduleMonitor(): void {
    const interval = this.#options.probeIntervalMs;
    if (interval === 0 || this.#closed) return;
    this.#monitorTimer = setTimeout(() => {
      void this.#monitor().finally(() => this.#scheduleMonitor());
    }, interval);
    this.#monitorTimer.unref();
  }

  async #monitor(): Promise<void> {
    const probes: Promise<unknown>[] = [];
    // Until the primary's identity is confirmed, its retry timer checks it.
    if (this.#confirmed !== undefined) probes.push(this.#primary.walProbe.shared());
    for (const replica of this.#health.values()) {
      if (replica.available) probes.push(replica.replayProbe.shared());
    }
    await Promise.allSettled(probes);
    if (!this.#closed) this.#options.afterRound?.();
  }
}

function readyErrorCode(failures: readonly NodeFailure[]): LaglessErrorCode {
  const codes = new Set(failures.map((failure) => failure.code));
  if (failures.some((failure) => failure.role === 'primary')) {
    return codes.has('PRIMARY_MISCONFIGURED') ? 'PRIMARY_MISCONFIGURED' : 'PRIMARY_UNAVAILABLE';
  }
  return codes.has('REPLICA_MISCONFIGURED') ? 'REPLICA_MISCONFIGURED' : 'REPLICA_UNAVAILABLE';
}
