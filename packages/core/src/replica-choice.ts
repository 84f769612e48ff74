import { type Balancer, SLOW_TIE_FACTOR } from './balancers.js';
import type { Consistency, Scope } from './consistency.js';
import { LaglessError } from './errors.js';
import type { RouterEventEmitter, RouterEvents } from './events.js';
import { formatLsn } from './lsn.js';
import type { PrimaryTracker } from './primary.js';
import type { Replica, ReplicaHealth } from './replica-health.js';
import type { ReadOptions } from './router.js';
import type { ReadTrace } from './served-read.js';
import { wakeAfter } from './timeout.js';

export type FallbackReason = RouterEvents['fallback']['reason'];

/** Replay probes a waiting read runs back to back before it starts pausing between them. */
const QUICK_PROBES = 3;

export interface ReplicaChoiceOptions {
  readonly zone: string | undefined;
  readonly maxLagMs: number;
  readonly maxLagBytes: number;
  readonly waitTimeoutMs: number;
  readonly onTimeout: 'primary' | 'error';
}

/**
 * Where a read goes: the replica that can serve what it requires (its session's replica first, this
 * app's zone next), after a bounded wait for one to replay it, or why the primary serves it
 * instead. No I/O unless a read must wait or a session leaves the replica it read from.
 */
export class ReplicaChooser<C> {
  readonly #options: ReplicaChoiceOptions;
  readonly #health: ReplicaHealth<C>;
  readonly #primary: PrimaryTracker;
  readonly #consistency: Consistency;
  readonly #balancer: Balancer;
  readonly #events: RouterEventEmitter;
  readonly #counters: { waits: number };
  readonly #closing: AbortSignal;

  constructor(
    options: ReplicaChoiceOptions,
    deps: {
      health: ReplicaHealth<C>;
      primary: PrimaryTracker;
      consistency: Consistency;
      balancer: Balancer;
      events: RouterEventEmitter;
      counters: { waits: number };
      closing: AbortSignal;
    },
  ) {
    this.#options = options;
    this.#health = deps.health;
    this.#primary = deps.primary;
    this.#consistency = deps.consistency;
    this.#balancer = deps.balancer;
    this.#events = deps.events;
    this.#counters = deps.counters;
    this.#closing = deps.closing;
  }

  /**
   * The replica a read goes to, or why the primary serves it; and what it requires now (a session
   * leaving the replica it read from requires more).
   */
  async choose(
    options: ReadOptions,
    excluded: ReadonlySet<Replica<C>> | undefined,
    required: bigint,
    scopes: readonly Scope[],
    trace?: ReadTrace,
  ): Promise<{ to: Replica<C> | FallbackReason; required: bigint }> {
    // Staying on the replica the session read from keeps its reads monotonic at no cost, unless a
    // better one is there: leaving costs one check that the next replica has what the session saw.
    const sticky = this.#consistency.stickyReplica<Replica<C>>(scopes);
    if (
      sticky !== undefined &&
      this.#canServe(sticky, options, excluded, required) &&
      !this.#worthLeaving(sticky, options, excluded)
    ) {
      return { to: sticky, required };
    }
    if (this.#consistency.hasUncoveredReads(scopes)) {
      // Leaving it: the next replica must have replayed at least what the session saw there.
      if (!(await this.#consistency.coverReads(scopes))) return { to: 'read-position-unknown', required };
      const covered = this.#consistency.neededNow(scopes);
      if (covered > required) required = covered;
    }
    const ready = this.#eligible(options, excluded, required);
    if (ready.length > 0) return { to: this.#pick(ready), required };
    if (required === 0n) return { to: 'no-replica', required };
    let current = (): bigint => required;
    let claimsSettled: Promise<void> | undefined;
    if (this.#consistency.hasClaims(scopes)) {
      // A client's token beyond anything seen on the primary: the primary is being asked; stop
      // honouring it the moment it says it never got that far.
      claimsSettled = this.#consistency.verifyClaims(scopes);
      const minLsn = options.minLsn ?? 0n;
      current = () => {
        const scoped = this.#consistency.neededNow(scopes);
        return scoped > minLsn ? scoped : minLsn;
      };
    }
    const waited = await this.#waitForReplay(current, options, excluded, claimsSettled, trace);
    required = current();
    if (waited !== 'timeout') return { to: waited ?? 'no-replica', required };
    if (this.#options.onTimeout === 'error') {
      throw new LaglessError(
        'LSN_WAIT_TIMEOUT',
        `no replica replayed ${formatLsn(required)} within ${this.#options.waitTimeoutMs} ms`,
        { context: { requiredLsn: formatLsn(required), waitTimeoutMs: this.#options.waitTimeoutMs } },
      );
    }
    return { to: 'lsn-timeout', required };
  }

  /**
   * True when a session should leave the replica it reads from: another one in this app's zone can
   * serve while it is outside, or another answers clearly faster (the balancer's own tie rule), so
   * a long session does not stay pinned to a replica that slowed down or to another zone.
   */
  #worthLeaving(sticky: Replica<C>, options: ReadOptions, excluded: ReadonlySet<Replica<C>> | undefined): boolean {
    const zone = this.#options.zone;
    const outsideZone = zone !== undefined && sticky.node.zone !== zone;
    const limit = sticky.latencyScoreMs / SLOW_TIE_FACTOR;
    for (const replica of this.#health.values()) {
      if (replica === sticky || !this.#canServe(replica, options, excluded, 0n)) continue;
      if (outsideZone && replica.node.zone === zone) return true;
      const score = replica.latencyScoreMs;
      // Unmeasured (0) scores give no basis to move.
      if (score > 0 && score < limit) return true;
    }
    return false;
  }

  /** The balancer's choice, among this app's zone's replicas while any of them can serve. */
  #pick(ready: Replica<C>[]): Replica<C> {
    const zone = this.#options.zone;
    if (zone !== undefined && ready.length > 1) {
      const local = ready.filter((replica) => replica.node.zone === zone);
      if (local.length > 0 && local.length < ready.length) return this.#balancer.pick(local);
    }
    return this.#balancer.pick(ready);
  }

  /** The highest replay position among replicas in rotation, if any is known. */
  highestReplay(): bigint | undefined {
    let highest: bigint | undefined;
    for (const replica of this.#health.values()) {
      if (
        replica.available &&
        replica.replayLsn !== undefined &&
        (highest === undefined || replica.replayLsn > highest)
      ) {
        highest = replica.replayLsn;
      }
    }
    return highest;
  }

  lagOf(replica: Replica<C>): { bytes: number; ms: number } | undefined {
    return replica.replayLsn === undefined
      ? undefined
      : this.#primary.history.lagOf(replica.replayLsn, replica.replayAt);
  }

  /** True when some replica is known to have replayed `required` (no wait would be needed). */
  anyCanServe(required: bigint): boolean {
    return this.#eligible({}, undefined, required).length > 0;
  }

  /** Replicas that may serve a read now; with `required`, only those known to have replayed it. */
  #eligible(options: ReadOptions, excluded: ReadonlySet<Replica<C>> | undefined, required = 0n): Replica<C>[] {
    const out: Replica<C>[] = [];
    for (const replica of this.#health.values()) {
      if (this.#canServe(replica, options, excluded, required)) out.push(replica);
    }
    return out;
  }

  #canServe(
    replica: Replica<C>,
    options: ReadOptions,
    excluded: ReadonlySet<Replica<C>> | undefined,
    required: bigint,
  ): boolean {
    if (!replica.available || excluded?.has(replica)) return false;
    if (required > 0n && (replica.replayLsn === undefined || replica.replayLsn < required)) return false;
    const maxLagMs = Math.min(this.#options.maxLagMs, options.maxStalenessMs ?? Number.POSITIVE_INFINITY);
    const maxLagBytes = this.#options.maxLagBytes;
    if (maxLagMs !== Number.POSITIVE_INFINITY || maxLagBytes !== Number.POSITIVE_INFINITY) {
      // Unmeasured lag counts as too much: a limit is a promise we cannot keep blind.
      const lag = this.lagOf(replica);
      if (!lag || lag.ms > maxLagMs || lag.bytes > maxLagBytes) return false;
    }
    return true;
  }

  /** Polls the eligible replicas' replay positions until one reaches `required()` or time runs out. */
  async #waitForReplay(
    required: () => bigint,
    options: ReadOptions,
    excluded: ReadonlySet<Replica<C>> | undefined,
    requirementMayDrop: Promise<void> | undefined,
    trace: ReadTrace | undefined,
  ): Promise<Replica<C> | undefined | 'timeout'> {
    this.#counters.waits++;
    const started = performance.now();
    const deadline = started + this.#options.waitTimeoutMs;
    const signal = this.#closing;
    const done = (outcome: RouterEvents['wait']['outcome'], replica?: Replica<C>) => {
      const waitedMs = performance.now() - started;
      if (trace) trace.waitedMs += waitedMs;
      this.#events.emit('wait', {
        requiredLsn: formatLsn(required()),
        waitedMs,
        outcome,
        ...(replica ? { replica: replica.name } : {}),
      });
    };
    // Streaming replicas usually replay a write within a millisecond: the first probes follow each
    // other at once, then back off (a replica that lags for real is not polled flat out).
    let probesWithoutPause = QUICK_PROBES;
    let pause = 1;
    // Raced only until it settles once: a settled promise in every race would make this loop spin.
    let drop = requirementMayDrop;
    void drop?.then(() => {
      drop = undefined;
    });
    for (;;) {
      const candidates = this.#eligible(options, excluded);
      if (candidates.length === 0) {
        done('no-replica');
        return undefined;
      }
      const probes = this.#firstReplayed(candidates, options, excluded, required);
      const remaining = deadline - performance.now();
      if (remaining > 0) {
        const timeout = wakeAfter(remaining, signal);
        await Promise.race(drop ? [probes, timeout.promise, drop] : [probes, timeout.promise]);
        timeout.cancel();
      } else {
        await probes;
      }
      this.#assertOpen();
      const ready = this.#eligible(options, excluded, required());
      if (ready.length > 0) {
        const replica = this.#pick(ready);
        done('replica', replica);
        return replica;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        done('timeout');
        return 'timeout';
      }
      if (probesWithoutPause > 0) {
        probesWithoutPause--;
        continue;
      }
      const backoff = wakeAfter(Math.min(pause, left), signal);
      await (drop ? Promise.race([backoff.promise, drop]) : backoff.promise);
      backoff.cancel();
      this.#assertOpen();
      pause = Math.min(pause * 2, 20);
    }
  }

  /**
   * Probes `candidates`' replay positions; settles as soon as one of them can serve the read, or
   * when every probe is in (a slow or lagging replica does not hold up the others).
   */
  #firstReplayed(
    candidates: readonly Replica<C>[],
    options: ReadOptions,
    excluded: ReadonlySet<Replica<C>> | undefined,
    required: () => bigint,
  ): Promise<void> {
    return new Promise((resolve) => {
      let left = candidates.length;
      for (const replica of candidates) {
        // Fresh: a probe already under way may have started before the position this read needs.
        replica.replayProbe.fresh().then(
          () => {
            if (--left === 0 || this.#canServe(replica, options, excluded, required())) resolve();
          },
          () => {
            if (--left === 0) resolve();
          },
        );
      }
    });
  }

  #assertOpen(): void {
    if (this.#closing.aborted) throw new LaglessError('CLOSED', 'this router was closed');
  }
}
