import { setMaxListeners } from 'node:events';
import { type Balancer, createBalancer } from './balancers.js';
import { ClusterWatch, type NodeFailure } from './cluster-watch.js';
import { isConnectionLevelError, isRecoveryConflict } from './connection-errors.js';
import { Consistency, type Scope, type SessionInit } from './consistency.js';
import { invalidOption, LaglessError } from './errors.js';
import { RouterEventEmitter, type RouterEventName, type RouterListener } from './events.js';
import type { LagHistoryStats } from './lag-history.js';
import { LagMonitor } from './lag-monitor.js';
import { formatLsn } from './lsn.js';
import {
  type ResolvedRouterOptions,
  type RouterNode,
  type RouterOptions,
  resolveRouterOptions,
  validateNode,
} from './options.js';
import { type PrimaryStatus, PrimaryTracker } from './primary.js';
import { type NodeProbes, postgresProbes } from './probes.js';
import { type FallbackReason, ReplicaChooser } from './replica-choice.js';
import { type Replica, ReplicaHealth } from './replica-health.js';
import { type ReadObserver, ReadTrace, type ServedRead } from './served-read.js';
import { DeadlineWatch } from './timeout.js';
import { decodeToken } from './token.js';

export type { NodeFailure } from './cluster-watch.js';
export type { SessionInit } from './consistency.js';
export type { LagHistoryStats } from './lag-history.js';
export type { PrimaryReadReason, ReadObserver, ServedRead } from './served-read.js';

/** Where a read or write ran, as handed to the function that runs it. */
export interface RouteTarget {
  readonly name: string;
  readonly role: 'primary' | 'replica';
}

export interface ReadOptions {
  /** Run on the primary, whatever else holds. */
  primary?: boolean;
  /** Only replicas whose measured lag is at most this serve this read. */
  maxStalenessMs?: number;
  /** An LSN this read must see, on top of its scope's. */
  minLsn?: bigint;
  /**
   * Any replica may serve, whatever it has replayed: no session or process requirement applies
   * (what `$replica()` asks for). `minLsn` still does.
   */
  anyReplica?: boolean;
}

const NO_SCOPES: readonly Scope[] = Object.freeze([]);

export interface ReplicaStats {
  name: string;
  /** The node's `zone`, or null. */
  zone: string | null;
  state: 'up' | 'down' | 'probing';
  inFlight: number;
  served: number;
  failed: number;
  latency: { ewmaMs: number; p50Ms: number; p95Ms: number; p99Ms: number };
  /** The last replay position a probe read, in `pg_lsn` text form; null while unknown (or down). */
  replayLsn: string | null;
  /** WAL bytes between the primary's latest known position and `replayLsn`; null while unknown. */
  lagBytes: number | null;
  /** How long ago the primary passed `replayLsn`, in ms (not replay timestamps); null while unknown. */
  lagMs: number | null;
  /**
   * `lagMs` as the background probes measured it over the last five minutes (one sample per
   * probe round while the replica serves): what a dashboard or an alert looks at.
   */
  lagHistory: LagHistoryStats;
}

/**
 * A snapshot of the router: nodes, routing counters and consistency work. Counters only grow; the
 * rest is the state at the call. Cheap enough to poll (percentiles are sorted on demand).
 */
export interface RouterStats {
  primary: { name: string; state: PrimaryStatus; served: number; inFlight: number; walLsn: string | null };
  replicas: ReplicaStats[];
  reads: {
    replica: number;
    primary: number;
    waits: number;
    fallbacks: number;
    retries: number;
    /** Replica reads served per zone (replicas without a zone are left out). */
    byZone: Record<string, number>;
  };
  writes: number;
  /** Round trips spent reading the primary's WAL position (shared by concurrent writers). */
  walProbes: number;
  /** Clients' tokens: decoded and honoured, or ignored because they could not be trusted. */
  tokens: {
    accepted: number;
    rejected: number;
    /** Tokens handed out that could not bound the session's reads (no replica nor primary answered). */
    unbounded: number;
  };
  /** Token store raises waiting for the store to come back. */
  pendingRaises: number;
}

/**
 * Seams for tests and for adapters whose nodes are not reached with SQL text.
 * @internal
 */
export interface RouterInternals {
  /** Typed probes of a node instead of SQL through its `query`. */
  probes?(node: RouterNode<unknown>, role: 'primary' | 'replica'): NodeProbes;
}

type RunOn<C, T> = (client: C, target: RouteTarget) => Promise<T> | T;

const PRIMARY_TARGET_ROLE = 'primary' as const;

/**
 * The routing engine. It knows nothing about ORMs: adapters hand it nodes and run their queries
 * through `read()` and `write()`. The read loop lives here; the cluster's health, consistency and
 * probes each have a module of their own.
 */
export class Router<C = unknown> implements AsyncDisposable {
  readonly #primaryNode: RouterNode<C>;
  readonly #primaryTarget: RouteTarget;
  readonly #options: ResolvedRouterOptions;
  readonly #balancer: Balancer;
  readonly #events: RouterEventEmitter;
  readonly #primary: PrimaryTracker;
  readonly #health: ReplicaHealth<C>;
  readonly #watch: ClusterWatch<C>;
  readonly #consistency: Consistency;
  readonly #chooser: ReplicaChooser<C>;
  readonly #lag: LagMonitor<Replica<C>>;
  readonly #deadlines: DeadlineWatch;
  readonly #closing = new AbortController();
  #primaryServed = 0;
  #primaryInFlight = 0;
  readonly #reads = { replica: 0, primary: 0, waits: 0, fallbacks: 0, retries: 0 };

  constructor(options: RouterOptions<C>, internals: RouterInternals = {}) {
    const { primary, replicas, resolved } = resolveRouterOptions(options);
    this.#primaryNode = primary;
    this.#primaryTarget = Object.freeze({ name: primary.name, role: PRIMARY_TARGET_ROLE });
    this.#options = resolved;
    this.#balancer = createBalancer(resolved.balancer, resolved.random);
    this.#events = new RouterEventEmitter(resolved.logger);
    const probesFor = (node: RouterNode<C>, role: 'primary' | 'replica'): NodeProbes =>
      internals.probes?.(node as RouterNode<unknown>, role) ?? postgresProbes(node, role, resolved.probeTimeoutMs);
    this.#primary = new PrimaryTracker(primary.name, probesFor(primary, 'primary'), this.#events);
    this.#health = new ReplicaHealth<C>(
      { readmission: resolved.readmission, random: resolved.random, onReplicaError: resolved.onReplicaError },
      this.#events,
      (node) => probesFor(node, 'replica'),
      () => this.#watch.identity,
    );
    for (const node of replicas) this.#health.add(node);
    this.#lag = new LagMonitor<Replica<C>>(resolved.lagAlertMs, this.#events, (replica) =>
      this.#chooser.lagOf(replica),
    );
    this.#deadlines = new DeadlineWatch(Math.min(250, Math.max(5, resolved.replicaTimeoutMs / 20)));
    // Every read waiting for a replica listens for close(): hundreds at once is normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    // Checks start at once so the first read rarely waits for them; ready() reports what failed.
    this.#watch = new ClusterWatch(
      {
        systemIdentifier: resolved.systemIdentifier,
        probeIntervalMs: resolved.probeIntervalMs,
        retry: resolved.readmission,
        random: resolved.random,
        afterRound: () => this.#lag.sample(this.#health.values()),
      },
      this.#events,
      this.#primary,
      this.#health,
    );
    this.#consistency = new Consistency(
      {
        consistency: resolved.consistency,
        monotonicReads: resolved.monotonicReads,
        tokenSecrets: resolved.tokenSecrets,
        tokenStore: resolved.tokenStore,
        tokenTtlMs: resolved.tokenTtlMs,
        waitTimeoutMs: resolved.waitTimeoutMs,
        random: resolved.random,
      },
      this.#events,
      this.#primary,
      () => this.#watch.identity,
      () => this.#watch.firstRound(),
      () => this.#chooser.highestReplay(),
      this.#closing.signal,
    );
    this.#chooser = new ReplicaChooser<C>(
      {
        zone: resolved.zone,
        maxLagMs: resolved.maxLagMs,
        maxLagBytes: resolved.maxLagBytes,
        waitTimeoutMs: resolved.waitTimeoutMs,
        onTimeout: resolved.onTimeout,
      },
      {
        health: this.#health,
        primary: this.#primary,
        consistency: this.#consistency,
        balancer: this.#balancer,
        events: this.#events,
        counters: this.#reads,
        closing: this.#closing.signal,
      },
    );
    for (const node of [primary, ...replicas]) node.attach?.((error) => this.reportError(node.name, error));
  }

  // ---------------------------------------------------------------- public surface

  /**
   * Resolves once the first round of checks is over and the primary and every replica passed;
   * otherwise rejects naming each node that did not, with the server's code (the router serves
   * what it can meanwhile).
   */
  ready(): Promise<void> {
    this.#assertOpen();
    return this.#watch.ready();
  }

  /** Every node not serving now, and why (what `ready()` would name). */
  failures(): NodeFailure[] {
    return this.#watch.failures();
  }

  /**
   * Runs a read on the best replica that satisfies the current scope's consistency, or on the
   * primary. `fn` may run twice (on another node) if a replica fails at the connection level.
   */
  read<T>(fn: RunOn<C, T>, options: ReadOptions = {}): Promise<T> {
    // Nobody observes reads (the usual case): nothing is measured or allocated for it.
    if (this.#events.listenerCount('read') === 0 && !this.#consistency.observingReads) {
      return this.#read(fn, options, undefined);
    }
    return this.#observedRead(fn, options);
  }

  /** Runs `fn` on the primary, then raises the current scope's required LSN past it. */
  async write<T>(fn: RunOn<C, T>): Promise<T> {
    this.#assertOpen();
    let failure: unknown;
    try {
      return await this.#runOnPrimary(fn);
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      // Also after a failure: a write can commit and still report an error (a dropped connection).
      this.#consistency.markWrite(failure);
    }
  }

  /**
   * Records that a write just finished on the primary outside `write()` (adapters that route
   * statement by statement). Reads in the current scope will not see data older than it.
   * @param error the write failed with it; one that never reached the server moves nothing.
   */
  markWrite(error?: unknown): void {
    this.#consistency.markWrite(error);
  }

  /**
   * Runs `fn` in a fresh consistency scope (e.g. one HTTP request), optionally continuing from a
   * token or a stored key. A token that cannot be trusted is ignored (`token-rejected` says why).
   */
  session<T>(fn: () => Promise<T> | T): Promise<T>;
  session<T>(init: SessionInit, fn: () => Promise<T> | T): Promise<T>;
  session<T>(initOrFn: SessionInit | (() => Promise<T> | T), maybeFn?: () => Promise<T> | T): Promise<T> {
    // Not async: one promise layer less per request; mistakes still arrive as rejections.
    if (this.#closing.signal.aborted) return Promise.reject(new LaglessError('CLOSED', 'this router was closed'));
    const init = typeof initOrFn === 'function' ? {} : initOrFn;
    const fn = typeof initOrFn === 'function' ? initOrFn : maybeFn;
    if (typeof fn !== 'function') return Promise.reject(invalidOption('session(init, fn) fn', 'a function', fn));
    if (typeof init !== 'object' || init === null) {
      return Promise.reject(invalidOption('session(init)', 'an object', init));
    }
    return this.#consistency.session(init, fn);
  }

  /**
   * The LSN a read in the current scope must see (0n when none), or `'primary'` when it cannot be
   * known (the token store or the primary's position is unavailable): for adapters that route
   * statements themselves, e.g. one statement merged from several scopes' calls.
   */
  async requiredLsn(): Promise<bigint | 'primary'> {
    this.#assertOpen();
    const scopes = this.#consistency.current();
    if (scopes.length === 0) return 0n;
    const required = await this.#consistency.requirement(scopes);
    if (typeof required !== 'bigint') return 'primary';
    if (this.#consistency.hasClaims(scopes) && !this.#chooser.anyCanServe(required)) {
      // The caller routes on this number without coming back: settle a client's token beyond what
      // we saw the primary reach now, not after a wait.
      await this.#consistency.settleClaims(scopes);
      return this.#consistency.neededNow(scopes);
    }
    return required;
  }

  /** The current scope's token (after its writes' positions are known), or undefined if it has none. */
  async token(): Promise<string | undefined> {
    this.#assertOpen();
    return this.#consistency.token();
  }

  /**
   * Verifies a token from a client and returns its LSN, for callers who want to refuse a bad one
   * (sessions ignore them instead). Rejects with INVALID_TOKEN when it cannot be trusted; the
   * "ahead of the primary" check is skipped while the primary does not answer.
   */
  async decodeToken(token: string): Promise<bigint> {
    this.#assertOpen();
    await this.#watch.firstRound();
    const systemIdentifier = this.#watch.identity;
    if (systemIdentifier === undefined) {
      throw new LaglessError('PRIMARY_UNAVAILABLE', 'the cluster identity is unknown: no node could be checked');
    }
    const secrets = this.#options.tokenSecrets;
    const secret = secrets.length > 0 ? secrets : undefined;
    const { lsn } = decodeToken(token, { systemIdentifier, secret });
    const known = this.#primary.history.latestLsn;
    if (known === undefined || lsn > known) {
      // Our last sample may predate the write the token came from: ask the primary now.
      const current = await this.#primary.walProbe.fresh().catch(() => undefined);
      if (current !== undefined) decodeToken(token, { systemIdentifier, secret, primaryLsn: current });
    }
    return lsn;
  }

  on<E extends RouterEventName>(event: E, listener: RouterListener<E>): () => void {
    return this.#events.on(event, listener);
  }

  off<E extends RouterEventName>(event: E, listener: RouterListener<E>): void {
    this.#events.off(event, listener);
  }

  /** Adds a replica at runtime; resolves after its first check (it serves reads once it passes). */
  async addReplica(node: RouterNode<C>): Promise<void> {
    this.#assertOpen();
    const checked = validateNode<C>(node, 'addReplica(node)');
    if (checked.name === this.#primaryNode.name || this.#health.get(checked.name)) {
      throw invalidOption('addReplica(node).name', 'a name no other node has', checked.name);
    }
    const replica = this.#health.add(checked);
    checked.attach?.((error) => this.reportError(checked.name, error));
    // Before the first round is over, it decides for this replica as for the others.
    await this.#watch.firstRound();
    if (replica.health === 'probing' && replica.reportedIdentity === undefined) await this.#health.admit(replica);
  }

  /** Takes a replica out of rotation at once; resolves when its in-flight reads have finished. */
  async removeReplica(name: string): Promise<void> {
    const replica = this.#health.get(name);
    if (!replica || replica.removed) throw invalidOption('removeReplica(name)', 'the name of a replica', name);
    await this.#health.remove(replica);
  }

  /**
   * Tells the router a node's connection failed outside a read (e.g. a pool's idle client errored):
   * a replica is ejected at once, the primary marked down if the failure is at the connection level.
   */
  reportError(name: string, error: unknown): void {
    if (name === this.#primaryNode.name) {
      this.#primary.reportFailure(error);
      return;
    }
    const replica = this.#health.get(name);
    if (replica) this.#health.eject(replica, error);
  }

  /** {@link reportError} for a replica. */
  reportReplicaError(name: string, error: unknown): void {
    this.reportError(name, error);
  }

  stats(): RouterStats {
    const replicas: ReplicaStats[] = [];
    const byZone: Record<string, number> = {};
    for (const replica of this.#health.values()) {
      const lag = this.#chooser.lagOf(replica);
      const zone = replica.node.zone;
      if (zone !== undefined) byZone[zone] = (byZone[zone] ?? 0) + replica.served;
      replicas.push({
        name: replica.name,
        zone: zone ?? null,
        state: replica.health,
        inFlight: replica.inFlight,
        served: replica.served,
        failed: replica.failed,
        latency: { ewmaMs: replica.latency.ewmaMs, ...replica.latency.percentiles() },
        replayLsn: replica.replayLsn === undefined ? null : formatLsn(replica.replayLsn),
        lagBytes: lag ? lag.bytes : null,
        lagMs: lag ? lag.ms : null,
        lagHistory: this.#lag.history(replica),
      });
    }
    const walLsn = this.#primary.history.latestLsn;
    const consistency = this.#consistency.stats;
    return {
      primary: {
        name: this.#primaryNode.name,
        state: this.#primary.status,
        served: this.#primaryServed,
        inFlight: this.#primaryInFlight,
        walLsn: walLsn === undefined ? null : formatLsn(walLsn),
      },
      replicas,
      reads: { ...this.#reads, byZone },
      writes: consistency.writes,
      walProbes: this.#primary.walProbe.started,
      tokens: consistency.tokens,
      pendingRaises: consistency.pendingRaises,
    };
  }

  /**
   * Stops every timer and settles reads waiting for a replica at once (they reject with CLOSED).
   * The nodes' connections belong to the adapter and stay open.
   */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    this.#watch.close();
    this.#health.close();
    this.#consistency.close();
    this.#deadlines.close();
    this.#events.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------- the read loop

  async #read<T>(fn: RunOn<C, T>, options: ReadOptions, trace: ReadTrace | undefined): Promise<T> {
    this.#assertOpen();
    if (options.primary) return this.#onPrimary(fn, undefined, trace, 'forced');
    // Only the very first reads wait, and only for the round already under way.
    if (!this.#watch.firstRoundDone) await this.#watch.firstRound();
    if (this.#health.size === 0) return this.#onPrimary(fn, undefined, trace, 'no-replicas');
    let required = options.minLsn ?? 0n;
    const scopes = options.anyReplica ? NO_SCOPES : this.#consistency.current();
    if (scopes.length > 0) {
      const scoped = await this.#consistency.requirement(scopes);
      if (typeof scoped !== 'bigint') return this.#onPrimary(fn, scoped, trace);
      if (scoped > required) required = scoped;
    }
    return this.#onReplicas(fn, required, options, scopes, trace);
  }

  async #observedRead<T>(fn: RunOn<C, T>, options: ReadOptions): Promise<T> {
    // Taken now: the session's observers, not those of wherever the read happens to settle.
    const observers = this.#consistency.readObservers();
    const trace = new ReadTrace();
    let ok = false;
    try {
      const result = await this.#read(fn, options, trace);
      ok = true;
      return result;
    } finally {
      const served = trace.settle(ok);
      if (served !== undefined) this.#tellServed(served, observers);
    }
  }

  #tellServed(served: ServedRead, observers: readonly ReadObserver[] | undefined): void {
    this.#events.emit('read', served);
    if (observers === undefined) return;
    for (const observer of observers) {
      try {
        observer(served);
      } catch {
        // An observer's bug must not fail the read it observes.
      }
    }
  }

  async #onPrimary<T>(
    fn: RunOn<C, T>,
    fallback?: FallbackReason,
    trace?: ReadTrace,
    reason?: 'forced' | 'no-replicas',
  ): Promise<T> {
    if (fallback) {
      this.#reads.fallbacks++;
      this.#events.emit('fallback', { reason: fallback });
    }
    this.#reads.primary++;
    if (trace) {
      trace.reason = fallback ?? reason;
      trace.ranOn(this.#primaryTarget);
    }
    const result = await this.#runOnPrimary(fn);
    // With no replica every read is on the primary, monotonic without anything to record.
    if (this.#health.size > 0) this.#consistency.readOnPrimary();
    return result;
  }

  async #runOnPrimary<T>(fn: RunOn<C, T>): Promise<T> {
    this.#primaryInFlight++;
    try {
      return await fn(this.#primaryNode.client, this.#primaryTarget);
    } catch (error) {
      this.#primary.reportFailure(error);
      throw error;
    } finally {
      this.#primaryInFlight--;
      this.#primaryServed++;
    }
  }

  async #onReplicas<T>(
    fn: RunOn<C, T>,
    required: bigint,
    options: ReadOptions,
    scopes: readonly Scope[],
    trace: ReadTrace | undefined,
  ): Promise<T> {
    // Allocated only when a replica fails: most reads never need it.
    let excluded: Set<Replica<C>> | undefined;
    // One retry on another replica, then the primary.
    for (let attempt = 0; attempt < 2; attempt++) {
      const choice = await this.#chooser.choose(options, excluded, required, scopes, trace);
      if (typeof choice.to === 'string') {
        return this.#onPrimary(fn, choice.to === 'no-replica' && attempt > 0 ? 'retries-exhausted' : choice.to, trace);
      }
      required = choice.required;
      const replica = choice.to;
      trace?.ranOn(replica.target);
      try {
        const result = await this.#runOnReplica(replica, fn);
        this.#consistency.readOn(scopes, replica);
        return result;
      } catch (error) {
        const conflict = isRecoveryConflict(error);
        if (!conflict && !this.#isConnectionError(error)) throw error;
        if (!conflict) this.#health.eject(replica, error);
        excluded ??= new Set();
        excluded.add(replica);
        this.#reads.retries++;
        this.#events.emit('retry', { replica: replica.name, error });
      }
    }
    return this.#onPrimary(fn, 'retries-exhausted', trace);
  }

  async #runOnReplica<T>(replica: Replica<C>, fn: RunOn<C, T>): Promise<T> {
    replica.beginRead();
    const started = performance.now();
    let unwatch: (() => void) | undefined;
    let latency: number | undefined;
    try {
      const result = await new Promise<T>((resolve, reject) => {
        const timeoutMs = this.#options.replicaTimeoutMs;
        unwatch = this.#deadlines.watch(timeoutMs, () =>
          reject(
            new LaglessError('QUERY_TIMEOUT', `a read on ${replica.name} did not answer within ${timeoutMs} ms`, {
              context: { replica: replica.name, timeoutMs },
            }),
          ),
        );
        Promise.resolve(fn(replica.client, replica.target)).then(resolve, reject);
      });
      latency = performance.now() - started;
      this.#reads.replica++;
      return result;
    } finally {
      unwatch?.();
      replica.endRead(latency);
    }
  }

  #isConnectionError(error: unknown): boolean {
    return isConnectionLevelError(error) || (this.#options.isConnectionError?.(error) ?? false);
  }

  #assertOpen(): void {
    if (this.#closing.signal.aborted) throw new LaglessError('CLOSED', 'this router was closed');
  }
}

/** Creates a router over a primary and its replicas. */
export function createRouter<C>(options: RouterOptions<C>): Router<C> {
  return new Router(options);
}
