import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from './backoff.js';
import { type Balancer, createBalancer } from './balancers.js';
import { CoalescedProbe } from './coalesced-probe.js';
import { isConnectionLevelError, isRecoveryConflict } from './connection-errors.js';
import { LaglessError, redactSecrets } from './errors.js';
import { RouterEventEmitter, type RouterEventName, type RouterEvents, type RouterListener } from './events.js';
import { PrimaryLsnHistory } from './lag.js';
import { formatLsn, lsnFromPrimaryInsertPosition, parseLsn } from './lsn.js';
import {
  type ResolvedRouterOptions,
  type RouterNode,
  type RouterOptions,
  resolveRouterOptions,
  validateNode,
} from './options.js';
import { type ReplayObservation, ReplicaState } from './replica-state.js';
import { DeadlineWatch, withTimeout } from './timeout.js';
import { decodeToken, encodeToken } from './token.js';

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
}

export interface SessionInit {
  /** A token from an earlier request (header or cookie); empty or undefined means none. */
  token?: string | undefined;
  /** Key of this user or session in the token store: reads start from its LSN, writes raise it. */
  key?: string | undefined;
}

export interface ReplicaStats {
  name: string;
  state: 'up' | 'down' | 'probing';
  inFlight: number;
  served: number;
  failed: number;
  latency: { ewmaMs: number; p50Ms: number; p95Ms: number; p99Ms: number };
  replayLsn: string | null;
  lagBytes: number | null;
  lagMs: number | null;
}

export interface RouterStats {
  primary: { name: string; served: number; inFlight: number; walLsn: string | null };
  replicas: ReplicaStats[];
  reads: { replica: number; primary: number; waits: number; fallbacks: number; retries: number };
  writes: number;
  /** Round trips spent reading the primary's WAL position (shared by concurrent writers). */
  walProbes: number;
}

/** The consistency state of one scope: a session, or the whole process under `global`. */
class ConsistencyScope {
  requiredLsn = 0n;
  /** LSN captures of writes still in flight; reads wait for them. */
  readonly pending = new Set<Promise<void>>();
  /** Writes whose position could not be read: the next read re-reads it, or goes to the primary. */
  unresolvedWrites = 0;
  storeKey: string | undefined;
  storeLoad: Promise<void> | undefined;
  storeFailed = false;
  readonly storeRaises = new Set<Promise<void>>();

  raise(lsn: bigint): void {
    if (lsn > this.requiredLsn) this.requiredLsn = lsn;
  }
}

const IDENTITY_SQL =
  'SELECT system_identifier::text AS id, pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replay FROM pg_control_system()';
const REPLAY_SQL = 'SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replay';
const PRIMARY_IDENTITY_SQL =
  "SELECT system_identifier::text AS id, pg_current_wal_insert_lsn()::text AS lsn, current_setting('wal_block_size') AS block FROM pg_control_system()";
const PRIMARY_LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';

const PRIMARY_TARGET_ROLE = 'primary' as const;
const NO_SCOPES: readonly ConsistencyScope[] = Object.freeze([]);

function truthy(value: unknown): boolean {
  return value === true || value === 't' || value === 'true' || value === 1;
}

function firstRow(rows: ReadonlyArray<Record<string, unknown>>, what: string): Record<string, unknown> {
  const row = rows[0];
  if (!row) throw new LaglessError('PRIMARY_UNAVAILABLE', `${what} returned no row`);
  return row;
}

/**
 * The routing engine. It knows nothing about ORMs: adapters hand it nodes and run their queries
 * through `read()` and `write()`.
 */
export class Router<C = unknown> {
  readonly #primary: RouterNode<C>;
  readonly #primaryTarget: RouteTarget;
  readonly #replicas = new Map<string, ReplicaState<C>>();
  readonly #options: ResolvedRouterOptions;
  readonly #balancer: Balancer;
  readonly #events = new RouterEventEmitter();
  readonly #scopes = new AsyncLocalStorage<ConsistencyScope>();
  readonly #globalScope: ConsistencyScope | undefined;
  readonly #history = new PrimaryLsnHistory();
  readonly #walProbe: CoalescedProbe<bigint>;
  #systemIdentifier: string | undefined;
  #walBlockSize = 8192;
  #startup: Promise<void> | undefined;
  #started = false;
  readonly #deadlines: DeadlineWatch;
  #monitorTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #primaryServed = 0;
  #primaryInFlight = 0;
  readonly #reads = { replica: 0, primary: 0, waits: 0, fallbacks: 0, retries: 0 };
  #writes = 0;

  constructor(options: RouterOptions<C>) {
    const { primary, replicas, resolved } = resolveRouterOptions(options);
    this.#primary = primary;
    this.#primaryTarget = Object.freeze({ name: primary.name, role: PRIMARY_TARGET_ROLE });
    this.#options = resolved;
    this.#balancer = createBalancer(resolved.balancer, resolved.random);
    this.#globalScope = resolved.consistency === 'global' ? new ConsistencyScope() : undefined;
    this.#walProbe = new CoalescedProbe(() => this.#readPrimaryPosition());
    this.#deadlines = new DeadlineWatch(Math.min(250, Math.max(5, resolved.replicaTimeoutMs / 20)));
    for (const node of replicas) this.#replicas.set(node.name, this.#newReplica(node));
    // Checks start at once so the first read rarely waits for them; a failure is reported by ready().
    this.#startup = this.#runStartup();
    this.#startup.catch(() => {});
    this.#scheduleMonitor();
  }

  // ---------------------------------------------------------------- public surface

  /** Resolves once the primary and every replica were checked; rejects with what was wrong. */
  ready(): Promise<void> {
    this.#assertOpen();
    return this.#ensureStarted();
  }

  /**
   * Runs a read on the best replica that satisfies the current scope's consistency, or on the
   * primary. `fn` may run twice (on another node) if a replica fails at the connection level.
   */
  async read<T>(fn: (client: C, target: RouteTarget) => Promise<T> | T, options: ReadOptions = {}): Promise<T> {
    this.#assertOpen();
    if (options.primary) return this.#onPrimary(fn);
    if (!this.#started) await this.#ensureStarted().catch(() => {});
    if (this.#replicas.size === 0) return this.#onPrimary(fn);
    let required = options.minLsn ?? 0n;
    const scopes = this.#currentScopes();
    if (scopes.length > 0) {
      const scoped = await this.#requirement(scopes);
      if (scoped === 'store-unavailable' || scoped === 'write-position-unknown') return this.#onPrimary(fn, scoped);
      if (scoped > required) required = scoped;
    }
    return this.#onReplicas(fn, required, options);
  }

  /** Runs `fn` on the primary, then raises the current scope's required LSN past it. */
  async write<T>(fn: (client: C, target: RouteTarget) => Promise<T> | T): Promise<T> {
    this.#assertOpen();
    try {
      return await this.#runOnPrimary(fn);
    } finally {
      // Also after a failure: a write can commit and still report an error (a dropped connection).
      this.markWrite();
    }
  }

  /**
   * Records that a write just finished on the primary outside `write()` (adapters that route
   * statement by statement). Reads in the current scope will not see data older than it.
   */
  markWrite(): void {
    this.#writes++;
    const scopes = this.#currentScopes();
    if (scopes.length === 0) return;
    const position = this.#walProbe.fresh();
    for (const scope of scopes) {
      const capture = position.then(
        (lsn) => {
          scope.raise(lsn);
          this.#raiseInStore(scope, lsn);
        },
        () => {
          scope.unresolvedWrites++;
        },
      );
      scope.pending.add(capture);
      void capture.then(() => scope.pending.delete(capture));
    }
  }

  /** Runs `fn` in a fresh consistency scope (e.g. one HTTP request), optionally continuing from a token or a stored key. */
  session<T>(fn: () => Promise<T> | T): Promise<T>;
  session<T>(init: SessionInit, fn: () => Promise<T> | T): Promise<T>;
  async session<T>(initOrFn: SessionInit | (() => Promise<T> | T), maybeFn?: () => Promise<T> | T): Promise<T> {
    this.#assertOpen();
    const init = typeof initOrFn === 'function' ? {} : initOrFn;
    const fn = typeof initOrFn === 'function' ? initOrFn : maybeFn;
    if (typeof fn !== 'function') throw new LaglessError('INVALID_OPTION', 'session(init, fn): fn must be a function');
    const scope = new ConsistencyScope();
    // A nested session never reads older data than the one around it.
    const parent = this.#scopes.getStore();
    if (parent) scope.raise(parent.requiredLsn);
    if (init.token) scope.raise(await this.decodeToken(init.token));
    if (init.key !== undefined) this.#loadFromStore(scope, init.key);
    try {
      return await this.#scopes.run(scope, async () => await fn());
    } finally {
      // Another instance may serve this user's next request: its LSN must be stored before we answer.
      if (scope.storeKey !== undefined) await this.#settleStoreWrites(scope);
    }
  }

  /**
   * The LSN a read in the current scope must see (0n when none), or `'primary'` when it cannot be
   * known (the token store or the primary's position is unavailable): for adapters that route
   * statements themselves, e.g. one statement merged from several scopes' calls.
   */
  async requiredLsn(): Promise<bigint | 'primary'> {
    this.#assertOpen();
    const scopes = this.#currentScopes();
    if (scopes.length === 0) return 0n;
    const required = await this.#requirement(scopes);
    return typeof required === 'bigint' ? required : 'primary';
  }

  /** The current scope's token (after its writes' positions are known), or undefined if it has none. */
  async token(): Promise<string | undefined> {
    this.#assertOpen();
    const scope = this.#scopes.getStore() ?? this.#globalScope;
    if (!scope) return undefined;
    await this.#requirement([scope]);
    if (scope.requiredLsn === 0n) return undefined;
    const systemIdentifier = await this.#systemId();
    return encodeToken({ lsn: scope.requiredLsn, systemIdentifier }, this.#options.tokenSecret);
  }

  /** Verifies a token from a client and returns its LSN; INVALID_TOKEN when it cannot be trusted. */
  async decodeToken(token: string): Promise<bigint> {
    const systemIdentifier = await this.#systemId();
    const payload = decodeToken(token, { systemIdentifier, secret: this.#options.tokenSecret });
    const known = this.#history.latestLsn;
    if (known === undefined || payload.lsn > known) {
      // Our last sample may predate the write the token came from: ask the primary now.
      const current = await this.#walProbe.fresh();
      decodeToken(token, { systemIdentifier, secret: this.#options.tokenSecret, primaryLsn: current });
    }
    return payload.lsn;
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
    if (checked.name === this.#primary.name || this.#replicas.has(checked.name)) {
      throw new LaglessError('INVALID_OPTION', `addReplica: a node named "${checked.name}" already exists`);
    }
    const replica = this.#newReplica(checked);
    this.#replicas.set(checked.name, replica);
    await this.#ensureStarted().catch(() => {});
    if (this.#systemIdentifier !== undefined) await this.#admit(replica);
  }

  /** Takes a replica out of rotation at once; resolves when its in-flight reads have finished. */
  async removeReplica(name: string): Promise<void> {
    const replica = this.#replicas.get(name);
    if (!replica || replica.removed) {
      throw new LaglessError('INVALID_OPTION', `removeReplica: no replica named "${name}"`);
    }
    replica.removed = true;
    clearTimeout(replica.readmissionTimer);
    await replica.drained();
    this.#replicas.delete(name);
  }

  /** Tells the router a replica's connection failed outside a read (e.g. a pool's idle client errored). */
  reportReplicaError(name: string, error: unknown): void {
    const replica = this.#replicas.get(name);
    if (replica) this.#eject(replica, error);
  }

  stats(): RouterStats {
    const replicas: ReplicaStats[] = [];
    for (const replica of this.#replicas.values()) {
      const lag =
        replica.replayLsn === undefined ? undefined : this.#history.lagOf(replica.replayLsn, replica.replayAt);
      replicas.push({
        name: replica.name,
        state: replica.health,
        inFlight: replica.inFlight,
        served: replica.served,
        failed: replica.failed,
        latency: { ewmaMs: replica.latency.ewmaMs, ...replica.latency.percentiles() },
        replayLsn: replica.replayLsn === undefined ? null : formatLsn(replica.replayLsn),
        lagBytes: lag ? lag.bytes : null,
        lagMs: lag ? lag.ms : null,
      });
    }
    const walLsn = this.#history.latestLsn;
    return {
      primary: {
        name: this.#primary.name,
        served: this.#primaryServed,
        inFlight: this.#primaryInFlight,
        walLsn: walLsn === undefined ? null : formatLsn(walLsn),
      },
      replicas,
      reads: { ...this.#reads },
      writes: this.#writes,
      walProbes: this.#walProbe.started,
    };
  }

  /** Stops every timer. The nodes' connections belong to the adapter and stay open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#monitorTimer);
    this.#deadlines.close();
    for (const replica of this.#replicas.values()) clearTimeout(replica.readmissionTimer);
    this.#events.clear();
  }

  // ---------------------------------------------------------------- reads

  async #onPrimary<T>(
    fn: (client: C, target: RouteTarget) => Promise<T> | T,
    fallback?: RouterEvents['fallback']['reason'],
  ): Promise<T> {
    if (fallback) {
      this.#reads.fallbacks++;
      this.#events.emit('fallback', { reason: fallback });
    }
    this.#reads.primary++;
    return this.#runOnPrimary(fn);
  }

  async #runOnPrimary<T>(fn: (client: C, target: RouteTarget) => Promise<T> | T): Promise<T> {
    this.#primaryInFlight++;
    try {
      return await fn(this.#primary.client, this.#primaryTarget);
    } finally {
      this.#primaryInFlight--;
      this.#primaryServed++;
    }
  }

  async #onReplicas<T>(
    fn: (client: C, target: RouteTarget) => Promise<T> | T,
    required: bigint,
    options: ReadOptions,
  ): Promise<T> {
    // Allocated only when a replica fails: most reads never need it.
    let excluded: Set<ReplicaState<C>> | undefined;
    // One retry on another replica, then the primary.
    for (let attempt = 0; attempt < 2; attempt++) {
      let replica: ReplicaState<C> | undefined;
      const ready = this.#eligible(options, excluded, required);
      if (ready.length > 0) {
        replica = this.#balancer.pick(ready);
      } else if (required > 0n) {
        const waited = await this.#waitForReplay(required, options, excluded);
        if (waited === 'timeout') {
          if (this.#options.onTimeout === 'error') {
            throw new LaglessError(
              'LSN_WAIT_TIMEOUT',
              `no replica replayed ${formatLsn(required)} within ${this.#options.waitTimeoutMs} ms`,
              { context: { requiredLsn: formatLsn(required), waitTimeoutMs: this.#options.waitTimeoutMs } },
            );
          }
          return this.#onPrimary(fn, 'lsn-timeout');
        }
        replica = waited;
      }
      if (!replica) return this.#onPrimary(fn, attempt === 0 ? 'no-replica' : 'retries-exhausted');
      try {
        return await this.#runOnReplica(replica, fn);
      } catch (error) {
        const conflict = isRecoveryConflict(error);
        if (!conflict && !this.#isConnectionError(error)) throw error;
        if (!conflict) this.#eject(replica, error);
        excluded ??= new Set();
        excluded.add(replica);
        this.#reads.retries++;
        this.#events.emit('retry', { replica: replica.name, error });
      }
    }
    return this.#onPrimary(fn, 'retries-exhausted');
  }

  async #runOnReplica<T>(replica: ReplicaState<C>, fn: (client: C, target: RouteTarget) => Promise<T> | T): Promise<T> {
    replica.inFlight++;
    const started = performance.now();
    let unwatch: (() => void) | undefined;
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
      replica.latency.record(performance.now() - started);
      replica.served++;
      this.#reads.replica++;
      return result;
    } catch (error) {
      replica.failed++;
      throw error;
    } finally {
      unwatch?.();
      replica.readFinished();
    }
  }

  /** Replicas that may serve a read now; with `required`, only those known to have replayed it. */
  #eligible(
    options: ReadOptions,
    excluded: ReadonlySet<ReplicaState<C>> | undefined,
    required = 0n,
  ): ReplicaState<C>[] {
    const maxLagMs = Math.min(this.#options.maxLagMs, options.maxStalenessMs ?? Number.POSITIVE_INFINITY);
    const maxLagBytes = this.#options.maxLagBytes;
    const limitLag = maxLagMs !== Number.POSITIVE_INFINITY || maxLagBytes !== Number.POSITIVE_INFINITY;
    const out: ReplicaState<C>[] = [];
    for (const replica of this.#replicas.values()) {
      if (!replica.available || excluded?.has(replica)) continue;
      if (required > 0n && (replica.replayLsn === undefined || replica.replayLsn < required)) continue;
      if (limitLag) {
        // Unmeasured lag counts as too much: a limit is a promise we cannot keep blind.
        const lag =
          replica.replayLsn === undefined ? undefined : this.#history.lagOf(replica.replayLsn, replica.replayAt);
        if (!lag || lag.ms > maxLagMs || lag.bytes > maxLagBytes) continue;
      }
      out.push(replica);
    }
    return out;
  }

  /** Polls the eligible replicas' replay positions until one reaches `required` or time runs out. */
  async #waitForReplay(
    required: bigint,
    options: ReadOptions,
    excluded: ReadonlySet<ReplicaState<C>> | undefined,
  ): Promise<ReplicaState<C> | undefined | 'timeout'> {
    this.#reads.waits++;
    const started = performance.now();
    const deadline = started + this.#options.waitTimeoutMs;
    const done = (outcome: RouterEvents['wait']['outcome'], replica?: ReplicaState<C>) => {
      this.#events.emit('wait', {
        requiredLsn: formatLsn(required),
        waitedMs: performance.now() - started,
        outcome,
        ...(replica ? { replica: replica.name } : {}),
      });
    };
    let pause = 1;
    for (;;) {
      const candidates = this.#eligible(options, excluded);
      if (candidates.length === 0) {
        done('no-replica');
        return undefined;
      }
      const probes = Promise.allSettled(candidates.map((replica) => replica.replayProbe.shared()));
      const remaining = deadline - performance.now();
      await (remaining > 0 ? Promise.race([probes, sleep(remaining)]) : probes);
      const ready = this.#eligible(options, excluded, required);
      if (ready.length > 0) {
        const replica = this.#balancer.pick(ready);
        done('replica', replica);
        return replica;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        done('timeout');
        return 'timeout';
      }
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, 20);
    }
  }

  #isConnectionError(error: unknown): boolean {
    return isConnectionLevelError(error) || (this.#options.isConnectionError?.(error) ?? false);
  }

  // ---------------------------------------------------------------- consistency

  #currentScopes(): readonly ConsistencyScope[] {
    if (this.#options.consistency === 'none') return NO_SCOPES;
    const session = this.#scopes.getStore();
    if (this.#globalScope) return session ? [session, this.#globalScope] : [this.#globalScope];
    return session ? [session] : NO_SCOPES;
  }

  async #requirement(
    scopes: readonly ConsistencyScope[],
  ): Promise<bigint | 'store-unavailable' | 'write-position-unknown'> {
    let required = 0n;
    for (const scope of scopes) {
      if (scope.storeLoad) await scope.storeLoad;
      if (scope.storeFailed) return 'store-unavailable';
      if (scope.pending.size > 0) await Promise.all(scope.pending);
      if (scope.unresolvedWrites > 0) {
        try {
          scope.raise(await this.#walProbe.fresh());
          scope.unresolvedWrites = 0;
        } catch {
          return 'write-position-unknown';
        }
      }
      if (scope.requiredLsn > required) required = scope.requiredLsn;
    }
    return required;
  }

  #loadFromStore(scope: ConsistencyScope, key: string): void {
    const store = this.#options.tokenStore;
    if (!store) throw new LaglessError('INVALID_OPTION', 'session({ key }) needs the tokenStore option');
    if (typeof key !== 'string' || key.length === 0) {
      throw new LaglessError('INVALID_OPTION', 'session({ key }): key must be a non-empty string');
    }
    scope.storeKey = key;
    // Loaded alongside the request's own work; only a read waits for it.
    scope.storeLoad = store.get(key).then(
      (lsn) => {
        if (lsn !== undefined) scope.raise(lsn);
      },
      (error: unknown) => {
        scope.storeFailed = true;
        this.#events.emit('store-error', { operation: 'get', error });
      },
    );
  }

  #raiseInStore(scope: ConsistencyScope, lsn: bigint): void {
    const store = this.#options.tokenStore;
    if (!store || scope.storeKey === undefined) return;
    const raise = store.raise(scope.storeKey, lsn, this.#options.tokenTtlMs).then(
      () => undefined,
      (error: unknown) => {
        this.#events.emit('store-error', { operation: 'raise', error });
      },
    );
    scope.storeRaises.add(raise);
    void raise.then(() => scope.storeRaises.delete(raise));
  }

  async #settleStoreWrites(scope: ConsistencyScope): Promise<void> {
    while (scope.pending.size > 0 || scope.storeRaises.size > 0) {
      await Promise.all([...scope.pending, ...scope.storeRaises]);
    }
  }

  // ---------------------------------------------------------------- health and lag

  #newReplica(node: RouterNode<C>): ReplicaState<C> {
    return new ReplicaState(node, (replica) => this.#probeReplica(replica));
  }

  #ensureStarted(): Promise<void> {
    this.#startup ??= this.#runStartup();
    return this.#startup;
  }

  async #systemId(): Promise<string> {
    try {
      await this.#ensureStarted();
    } catch (error) {
      // A refused replica fails start-up too, but the primary's identity is known by then.
      if (this.#systemIdentifier === undefined) throw error;
    }
    return this.#systemIdentifier as string;
  }

  async #runStartup(): Promise<void> {
    try {
      const row = firstRow(
        await withTimeout(this.#primary.query(PRIMARY_IDENTITY_SQL), this.#options.probeTimeoutMs, 'the primary'),
        'the primary identity probe',
      );
      this.#systemIdentifier = String(row.id);
      this.#walBlockSize = Number(row.block) || 8192;
      this.#history.record(lsnFromPrimaryInsertPosition(parseLsn(String(row.lsn)), this.#walBlockSize), Date.now());
    } catch (error) {
      // Retried by the next read or ready().
      this.#startup = undefined;
      throw new LaglessError(
        'PRIMARY_UNAVAILABLE',
        `cannot reach the primary "${this.#primary.name}": ${redactSecrets(String((error as Error)?.message ?? error))}`,
        { cause: error },
      );
    }
    if (this.#replicas.size === 0) this.#events.emit('no-replicas', {});
    await Promise.all([...this.#replicas.values()].map((replica) => this.#admit(replica)));
    // Every replica was checked once (refused ones stay out): reads stop waiting on start-up.
    this.#started = true;
    const refused = [...this.#replicas.values()].filter((replica) => replica.misconfigured);
    if (refused.length > 0) {
      throw new LaglessError(
        'REPLICA_MISCONFIGURED',
        refused.map((replica) => replica.misconfigured?.message).join('; '),
        { context: { replicas: refused.map((replica) => replica.name) } },
      );
    }
  }

  /** Checks a replica's identity and, if it passes, puts it in rotation. */
  async #admit(replica: ReplicaState<C>): Promise<void> {
    if (replica.removed || replica.misconfigured || this.#closed) return;
    replica.health = 'probing';
    const at = Date.now();
    let row: Record<string, unknown>;
    try {
      [row = {}] = await withTimeout(replica.node.query(IDENTITY_SQL), this.#options.probeTimeoutMs, replica.name);
    } catch (error) {
      this.#eject(replica, error);
      return;
    }
    if (!truthy(row.recovery)) {
      this.#refuse(replica, 'is not in recovery: it is a primary, not a replica');
      return;
    }
    if (String(row.id) !== this.#systemIdentifier) {
      this.#refuse(
        replica,
        `belongs to another cluster (system identifier ${String(row.id)}, primary's ${this.#systemIdentifier})`,
      );
      return;
    }
    replica.health = 'up';
    replica.attempt = 0;
    replica.forgetReplay();
    replica.observe({ replayLsn: row.replay == null ? undefined : parseLsn(String(row.replay)), inRecovery: true, at });
    this.#events.emit('replica-up', {
      replica: replica.name,
      replayLsn: replica.replayLsn === undefined ? undefined : formatLsn(replica.replayLsn),
    });
  }

  #refuse(replica: ReplicaState<C>, reason: string): void {
    const error = new LaglessError('REPLICA_MISCONFIGURED', `replica "${replica.name}" ${reason}`, {
      context: { replica: replica.name },
    });
    replica.misconfigured = error;
    replica.health = 'down';
    replica.forgetReplay();
    clearTimeout(replica.readmissionTimer);
    this.#events.emit('replica-misconfigured', { replica: replica.name, error });
  }

  /** Out of rotation at once, its replay position forgotten, readmission scheduled with backoff. */
  #eject(replica: ReplicaState<C>, error: unknown): void {
    // A standby restarted after a crash can serve reads before it re-reaches its old position.
    replica.forgetReplay();
    if (replica.misconfigured || replica.removed || this.#closed) return;
    const wasUp = replica.health === 'up';
    const firstFailure = replica.attempt === 0;
    replica.health = 'down';
    if (replica.readmissionTimer !== undefined) return;
    if (wasUp || firstFailure) {
      this.#events.emit('replica-down', { replica: replica.name, error });
      try {
        this.#options.onReplicaError?.(error, replica.name);
      } catch {
        // The hook is for observing; it cannot change routing.
      }
    }
    const delay = backoffDelay(replica.attempt, this.#options.readmission, this.#options.random);
    replica.attempt++;
    replica.readmissionTimer = setTimeout(() => {
      replica.readmissionTimer = undefined;
      void this.#admit(replica);
    }, delay);
    replica.readmissionTimer.unref();
  }

  async #probeReplica(replica: ReplicaState<C>): Promise<ReplayObservation> {
    const at = Date.now();
    let row: Record<string, unknown>;
    try {
      [row = {}] = await withTimeout(replica.node.query(REPLAY_SQL), this.#options.probeTimeoutMs, replica.name);
    } catch (error) {
      this.#eject(replica, error);
      throw error;
    }
    const observation: ReplayObservation = {
      replayLsn: row.replay == null ? undefined : parseLsn(String(row.replay)),
      inRecovery: truthy(row.recovery),
      at,
    };
    if (!observation.inRecovery) this.#refuse(replica, 'left recovery (promoted?): it is no longer a replica');
    else replica.observe(observation);
    return observation;
  }

  async #readPrimaryPosition(): Promise<bigint> {
    const at = Date.now();
    const row = firstRow(
      await withTimeout(this.#primary.query(PRIMARY_LSN_SQL), this.#options.probeTimeoutMs, 'the primary'),
      'the primary WAL probe',
    );
    const lsn = lsnFromPrimaryInsertPosition(parseLsn(String(row.lsn)), this.#walBlockSize);
    this.#history.record(lsn, at);
    return lsn;
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
    if (this.#systemIdentifier === undefined) {
      await this.#ensureStarted().catch(() => {});
      return;
    }
    const probes: Promise<unknown>[] = [this.#walProbe.shared()];
    for (const replica of this.#replicas.values()) {
      if (replica.available) probes.push(replica.replayProbe.shared());
    }
    await Promise.allSettled(probes);
  }

  #assertOpen(): void {
    if (this.#closed) throw new LaglessError('CLOSED', 'this router was closed');
  }
}

/** Creates a router over a primary and its replicas. */
export function createRouter<C>(options: RouterOptions<C>): Router<C> {
  return new Router(options);
}
