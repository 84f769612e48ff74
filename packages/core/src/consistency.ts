import { AsyncLocalStorage } from 'node:async_hooks';
import { isNotConnectedError } from './connection-errors.js';
import { invalidOption, isLaglessError, LaglessError, redactSecrets } from './errors.js';
import type { RouterEventEmitter } from './events.js';
import { formatLsn, MAX_LSN } from './lsn.js';
import { PendingRaises } from './pending-raises.js';
import type { PrimaryTracker } from './primary.js';
import type { ReadObserver } from './served-read.js';
import { wakeAfter } from './timeout.js';
import { decodeToken, encodeToken, type TokenRejectionReason } from './token.js';
import type { TokenLookup, TokenStore } from './token-store.js';

/** How far a read's freshness guarantee reaches. */
export type ConsistencyMode = 'none' | 'session' | 'global';

/** Why a read must go to the primary: what it needs cannot be known elsewhere. */
export type PrimaryOnlyReason = 'store-unavailable' | 'write-position-unknown' | 'read-position-unknown';

/** What a scope needs of a replica it read from, to bound what that read saw. */
export interface ReadSource {
  readonly available: boolean;
  /** Changes whenever the replica was ejected or refused: what it serves may have gone back. */
  readonly incarnation: number;
  /** The replica's replay position, read after the call began. */
  readonly replayProbe: { fresh(): Promise<{ readonly replayLsn: bigint | undefined }> };
}

export interface SessionInit {
  /**
   * A token from an earlier request (header or cookie); empty or undefined means none. A token
   * that cannot be trusted is ignored, as if absent: see `onTokenRejected`.
   */
  token?: string | undefined;
  /** Key of this user or session in the token store: reads start from its LSN, writes raise it. */
  key?: string | undefined;
  /** Told when `token` was ignored (the `token-rejected` event tells every listener too). */
  onTokenRejected?: ((reason: TokenRejectionReason) => void) | undefined;
  /**
   * Told about each read run in this session and the sessions nested in it, once it settled: the
   * node that served it, why the primary did, waits and attempts (e.g. for a `Server-Timing`
   * header). Reads outside observed sessions measure nothing for it. @default undefined
   */
  onRead?: ReadObserver | undefined;
}

export interface ConsistencyOptions {
  readonly consistency: ConsistencyMode;
  readonly monotonicReads: boolean;
  /** Signing key first; empty when tokens are unsigned. */
  readonly tokenSecrets: readonly Uint8Array[];
  readonly tokenStore: TokenStore | undefined;
  readonly tokenTtlMs: number;
  readonly waitTimeoutMs: number;
  readonly random: () => number;
}

/** The consistency state of one scope: a session, or the whole process. */
class ConsistencyScope {
  /** A session's (monotonic reads, tokens), or the process-wide one every write raises. */
  readonly kind: 'session' | 'process';
  /** The session this one is nested in: its writes raise that one too. */
  readonly parent: ConsistencyScope | undefined;
  requiredLsn = 0n;
  /**
   * Replicas this session read from since its requirement last covered what it saw, with their
   * incarnation then, and the read's sequence number. While only one, live and unchanged, staying
   * there keeps reads monotonic for free; leaving it needs what it had replayed since.
   */
  readonly readFrom = new Map<ReadSource, { readonly incarnation: number; readonly seq: number }>();
  readSeq = 0;
  /** LSN captures of writes still in flight; reads wait for them. */
  readonly pending = new Set<Promise<void>>();
  /** Writes whose position could not be read: the next read re-reads it, or goes to the primary. */
  unresolvedWrites = 0;
  /** A client's token not decoded yet (the cluster's identity was not known when it arrived). */
  tokenText: unknown;
  /**
   * A verified token's LSN beyond anything we saw the primary reach: it may be from before a restore
   * or failover, or forged when unsigned. Reads honour it until the primary says otherwise.
   */
  claimLsn: bigint | undefined;
  /** The primary being asked about `claimLsn`, started as soon as the token was decoded. */
  claimCheck: Promise<void> | undefined;
  onTokenRejected: ((reason: TokenRejectionReason) => void) | undefined;
  /** This session's `onRead` and those of the sessions it is nested in, outermost first. */
  readObservers: readonly ReadObserver[] | undefined;
  storeKey: string | undefined;
  storeLoad: Promise<void> | undefined;
  storeFailed = false;
  readonly storeRaises = new Set<Promise<void>>();

  constructor(kind: 'session' | 'process', parent?: ConsistencyScope) {
    this.kind = kind;
    this.parent = parent;
  }

  raise(lsn: bigint): void {
    if (lsn > this.requiredLsn) this.requiredLsn = lsn;
    if (this.claimLsn !== undefined && this.claimLsn <= this.requiredLsn) this.claimLsn = undefined;
  }

  /** What reads in this scope must see now, counting an unverified claim. */
  get needed(): bigint {
    return this.claimLsn !== undefined && this.claimLsn > this.requiredLsn ? this.claimLsn : this.requiredLsn;
  }
}

export type Scope = ConsistencyScope;

const NO_SCOPES: readonly ConsistencyScope[] = Object.freeze([]);
const RAISE_RETRY = Object.freeze({ initialMs: 100, maxMs: 5_000, multiplier: 2, jitter: 0.2 });
const MAX_PENDING_RAISES = 10_000;

/**
 * Sessions, tokens and the token store: what each read must see. It asks the primary only for
 * positions no replica can vouch for, and never lets a client's token fail or stall a request.
 */
export class Consistency {
  readonly #options: ConsistencyOptions;
  readonly #events: RouterEventEmitter;
  readonly #primary: PrimaryTracker;
  readonly #identity: () => string | undefined;
  readonly #identitySettled: () => Promise<void>;
  /** The highest replay position among replicas in rotation, if any is known. */
  readonly #replayedBySome: () => bigint | undefined;
  readonly #closing: AbortSignal;
  readonly #scopes = new AsyncLocalStorage<ConsistencyScope>();
  /** Raised by every write of this process; honoured outside sessions (inside too, under `global`). */
  readonly #processScope: ConsistencyScope | undefined;
  readonly #pendingRaises: PendingRaises | undefined;
  readonly #tokens = { accepted: 0, rejected: 0, unbounded: 0 };
  #storeDown = false;
  #storeChecked = false;
  readonly #lossEpochsSeen = new Set<string>();
  #writes = 0;
  /** Sessions with read observers running now: while none, reads need not look for any. */
  #observedSessions = 0;

  constructor(
    options: ConsistencyOptions,
    events: RouterEventEmitter,
    primary: PrimaryTracker,
    identity: () => string | undefined,
    identitySettled: () => Promise<void>,
    replayedBySome: () => bigint | undefined,
    closing: AbortSignal,
  ) {
    this.#replayedBySome = replayedBySome;
    this.#closing = closing;
    this.#options = options;
    this.#events = events;
    this.#primary = primary;
    this.#identity = identity;
    this.#identitySettled = identitySettled;
    this.#processScope = options.consistency === 'none' ? undefined : new ConsistencyScope('process');
    const store = options.tokenStore;
    this.#pendingRaises =
      store &&
      new PendingRaises(store, {
        maxKeys: MAX_PENDING_RAISES,
        backoff: RAISE_RETRY,
        random: options.random,
        now: Date.now,
        onLanded: () => this.#storeAnswered(),
        onFailed: (error) => this.#storeFailed('raise', error),
        onDropped: (reason) =>
          this.#events.stateChange('store-raise-dropped', { reason }, () =>
            reason === 'overflow'
              ? `token store: more than ${MAX_PENDING_RAISES} raises waiting for the store to come back; the oldest is dropped (its session keeps only what replicas have replayed)`
              : 'token store: a raise that never landed expired with its key',
          ),
      });
  }

  get stats(): {
    tokens: { accepted: number; rejected: number; unbounded: number };
    writes: number;
    pendingRaises: number;
  } {
    return { tokens: { ...this.#tokens }, writes: this.#writes, pendingRaises: this.#pendingRaises?.size ?? 0 };
  }

  /** True while some session with an `onRead` observer runs. */
  get observingReads(): boolean {
    return this.#observedSessions > 0;
  }

  /** The read observers of the current session, if it has any. */
  readObservers(): readonly ReadObserver[] | undefined {
    return this.#scopes.getStore()?.readObservers;
  }

  /** The scopes whose requirements a read here must meet, innermost first. */
  current(): readonly ConsistencyScope[] {
    const process = this.#processScope;
    if (process === undefined) return NO_SCOPES;
    const session = this.#scopes.getStore();
    if (session === undefined) return [process];
    // Inside a session, only the session's own scope: a request is not slowed by other users' writes.
    return this.#options.consistency === 'global' ? [session, process] : [session];
  }

  /** The scopes a write raises: the session's and those it is nested in, and always the process's. */
  #writeScopes(): readonly ConsistencyScope[] {
    const process = this.#processScope;
    if (process === undefined) return NO_SCOPES;
    const scopes: ConsistencyScope[] = [];
    for (let session = this.#scopes.getStore(); session !== undefined; session = session.parent) scopes.push(session);
    scopes.push(process);
    return scopes;
  }

  // ------------------------------------------------------------------ monotonic reads

  /** The one replica the current session may stay on without any check, if there is one. */
  stickyReplica<R extends ReadSource>(scopes: readonly ConsistencyScope[]): R | undefined {
    const session = scopes[0];
    if (!this.#options.monotonicReads || session?.kind !== 'session' || session.readFrom.size !== 1) return undefined;
    const [entry] = session.readFrom as unknown as Map<R, { incarnation: number }>;
    if (entry === undefined) return undefined;
    const [replica, { incarnation }] = entry;
    return replica.available && replica.incarnation === incarnation ? replica : undefined;
  }

  /** True when the current session read from replicas its requirement does not cover yet. */
  hasUncoveredReads(scopes: readonly ConsistencyScope[]): boolean {
    const session = scopes[0];
    return this.#options.monotonicReads && session?.kind === 'session' && session.readFrom.size > 0;
  }

  /** A read of the current session just returned from `replica`. */
  readOn(scopes: readonly ConsistencyScope[], replica: ReadSource): void {
    const session = scopes[0];
    if (!this.#options.monotonicReads || session?.kind !== 'session') return;
    // The sessions it is nested in go on after it: what it saw bounds their next reads too.
    for (let scope: ConsistencyScope | undefined = session; scope !== undefined; scope = scope.parent) {
      scope.readFrom.set(replica, { incarnation: replica.incarnation, seq: ++scope.readSeq });
    }
  }

  /**
   * Raises the current session past everything its reads saw: each replica's replay position read
   * after those reads ended (an upper bound of what they saw), or the primary's position when a
   * replica is gone or changed. False when no bound could be read.
   */
  async coverReads(scopes: readonly ConsistencyScope[]): Promise<boolean> {
    const session = scopes[0];
    if (session?.kind !== 'session' || session.readFrom.size === 0) return true;
    const sources = [...session.readFrom];
    const bounds = await Promise.all(
      sources.map(async ([replica, { incarnation }]) => {
        if (replica.available && replica.incarnation === incarnation) {
          const seen = await replica.replayProbe.fresh().catch(() => undefined);
          // Unchanged since: a live standby's replay only moves forwards.
          if (seen?.replayLsn !== undefined && replica.incarnation === incarnation) return seen.replayLsn;
        }
        // It restarted or is gone: whatever it served, the primary had written by now.
        return this.#primary.walProbe.fresh().catch(() => undefined);
      }),
    );
    if (bounds.some((bound) => bound === undefined)) return false;
    for (const bound of bounds) session.raise(bound as bigint);
    // A concurrent read that ended on one of them meanwhile may have seen more: it stays to cover.
    for (const [replica, read] of sources) if (session.readFrom.get(replica) === read) session.readFrom.delete(replica);
    return true;
  }

  /**
   * A read of the current session ran on the primary: it may have seen anything committed until it
   * ended, so the session requires the primary's position after it (a later replica read cannot
   * show less). The capture is shared with writers' and read only by the session's next read.
   */
  readOnPrimary(): void {
    const session = this.#scopes.getStore();
    if (!this.#options.monotonicReads || session === undefined || this.#processScope === undefined) return;
    const position = this.#primary.walProbe.fresh();
    for (let scope: ConsistencyScope | undefined = session; scope !== undefined; scope = scope.parent) {
      this.#capture(scope, position);
    }
  }

  /** Runs `fn` in a fresh scope (nested in the current one, if any). */
  async session<T>(init: SessionInit, fn: () => Promise<T> | T): Promise<T> {
    // A nested session never reads older data than the one around it, and its writes raise that one.
    const parent = this.#scopes.getStore();
    const scope = new ConsistencyScope('session', parent);
    if (parent) {
      scope.raise(parent.requiredLsn);
      for (const [replica, read] of parent.readFrom) scope.readFrom.set(replica, read);
    }
    if (init.onTokenRejected !== undefined && typeof init.onTokenRejected !== 'function') {
      throw invalidOption('session(init).onTokenRejected', 'a function', init.onTokenRejected);
    }
    scope.onTokenRejected = init.onTokenRejected;
    if (init.onRead !== undefined && typeof init.onRead !== 'function') {
      throw invalidOption('session(init).onRead', 'a function', init.onRead);
    }
    const inherited = parent?.readObservers;
    scope.readObservers =
      init.onRead === undefined ? inherited : inherited ? [...inherited, init.onRead] : [init.onRead];
    if (init.token !== undefined && init.token !== '') {
      scope.tokenText = init.token;
      // Checked now when it can be without I/O, else on the first read.
      if (this.#identity() !== undefined) this.#decodeToken(scope);
    }
    // Awaited inside the scope: `fn` may return a lazy promise (Prisma's) that only starts its query
    // when awaited, and must find the scope then.
    const body = async (): Promise<T> => await fn();
    if (scope.readObservers === undefined) {
      return init.key === undefined ? await this.#scopes.run(scope, body) : await this.#run(scope, init, body);
    }
    this.#observedSessions++;
    try {
      return await this.#run(scope, init, body);
    } finally {
      this.#observedSessions--;
    }
  }

  async #run<T>(scope: ConsistencyScope, init: SessionInit, body: () => Promise<T>): Promise<T> {
    if (init.key === undefined) return await this.#scopes.run(scope, body);
    this.#loadFromStore(scope, init.key);
    try {
      return await this.#scopes.run(scope, body);
    } finally {
      // Another instance may serve this user's next request: its LSN goes to the store before we answer.
      await this.#settleStoreWrites(scope);
    }
  }

  /**
   * Records that a write just finished on the primary: reads in the current scopes will not see
   * data older than it. `error`: the write failed; if it never reached the server, nothing moves.
   */
  markWrite(error?: unknown): void {
    if (error !== undefined && isNotConnectedError(error)) return;
    this.#writes++;
    const scopes = this.#writeScopes();
    if (scopes.length === 0) return;
    const position = this.#primary.walProbe.fresh();
    for (const scope of scopes) this.#capture(scope, position);
  }

  /** Raises `scope` to `position` once it is known; its reads wait for that meanwhile. */
  #capture(scope: ConsistencyScope, position: Promise<bigint>): void {
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

  /**
   * Waits for what a read in `scopes` depends on (store loads, write captures, a token's decoding)
   * and returns the LSN it must see, or why only the primary can serve it.
   */
  async requirement(scopes: readonly ConsistencyScope[]): Promise<bigint | PrimaryOnlyReason> {
    let required = 0n;
    for (const scope of scopes) {
      if (scope.storeLoad) await scope.storeLoad;
      if (scope.storeFailed) return 'store-unavailable';
      if (scope.tokenText !== undefined) {
        if (this.#identity() === undefined) await this.#identitySettled();
        if (this.#identity() !== undefined) this.#decodeToken(scope);
        // Still unknown: the primary is away and no replica could be admitted, so every read goes
        // to the primary anyway; the token is decoded once the identity is known.
      }
      if (scope.pending.size > 0) await Promise.all(scope.pending);
      if (scope.unresolvedWrites > 0) {
        try {
          scope.raise(await this.#primary.walProbe.fresh());
          scope.unresolvedWrites = 0;
        } catch {
          return 'write-position-unknown';
        }
      }
      if (scope.claimLsn !== undefined) {
        const latest = this.#primary.history.latestLsn;
        if (latest !== undefined && scope.claimLsn <= latest) this.#acceptClaim(scope);
      }
      const needed = scope.needed;
      if (needed > required) required = needed;
    }
    return required;
  }

  /** The requirement of `scopes` as it stands (after `requirement()` settled them). */
  neededNow(scopes: readonly ConsistencyScope[]): bigint {
    let required = 0n;
    for (const scope of scopes) if (scope.needed > required) required = scope.needed;
    return required;
  }

  hasClaims(scopes: readonly ConsistencyScope[]): boolean {
    return scopes.some((scope) => scope.claimLsn !== undefined);
  }

  /**
   * Settles when the primary has said whether the scopes' unverified token LSNs exist: each is
   * accepted, or rejected as ahead of the primary. When the primary does not answer, they stay as
   * they are (reads keep honouring them, bounded by `waitTimeoutMs`). Never rejects.
   */
  verifyClaims(scopes: readonly ConsistencyScope[]): Promise<void> {
    const checks: Promise<void>[] = [];
    for (const scope of scopes) {
      if (scope.claimLsn === undefined) continue;
      scope.claimCheck ??= this.#checkClaim(scope);
      checks.push(scope.claimCheck);
    }
    return checks.length === 1 ? (checks[0] as Promise<void>) : Promise.all(checks).then(() => undefined);
  }

  /** {@link verifyClaims}, waiting at most `waitTimeoutMs` (one primary probe, bounded like a wait). */
  async settleClaims(scopes: readonly ConsistencyScope[]): Promise<void> {
    const bound = wakeAfter(this.#options.waitTimeoutMs, this.#closing);
    await Promise.race([this.verifyClaims(scopes), bound.promise]);
    bound.cancel();
  }

  async #checkClaim(scope: ConsistencyScope): Promise<void> {
    let primaryLsn: bigint | undefined;
    try {
      // Fresh: a probe that started before the token arrived may predate the write it stands for.
      primaryLsn = await this.#primary.walProbe.fresh();
    } catch {
      // Unanswered: the claim stands, and a later read may ask again.
    }
    scope.claimCheck = undefined;
    const claim = scope.claimLsn;
    if (primaryLsn === undefined || claim === undefined) return;
    if (claim <= primaryLsn) {
      this.#acceptClaim(scope);
      return;
    }
    scope.claimLsn = undefined;
    this.#reject(
      scope,
      new LaglessError('INVALID_TOKEN', 'Rejected consistency token: its LSN is ahead of the primary', {
        context: { reason: 'ahead-of-primary', tokenLsn: formatLsn(claim), primaryLsn: formatLsn(primaryLsn) },
      }),
    );
  }

  /** The current scope's token, or undefined when it requires nothing (or the cluster is unknown). */
  async token(): Promise<string | undefined> {
    const scope = this.#scopes.getStore() ?? this.#processScope;
    if (!scope || this.#options.consistency === 'none') return undefined;
    await this.requirement([scope]);
    // What the session showed its client travels too: the next request continues from there.
    if (scope.readFrom.size > 0 && !(await this.coverReads([scope]))) {
      // Neither the replicas it read from nor the primary answered: the token still carries the
      // session's writes, not a bound of its reads. Counted, so it does not pass unseen.
      this.#tokens.unbounded++;
    }
    // A client's position the primary has not confirmed must not be handed back as ours: past this
    // request's writes, a bogus one would make the next request drop them with it.
    if (scope.claimLsn !== undefined) await this.settleClaims([scope]);
    // The HTTP helpers send a response once its token is known: by then another instance looking up
    // this session's key must find its writes. Bounded by the store's own timeout; a raise that
    // failed is retried in the background and the token itself still carries the writes.
    if (scope.storeRaises.size > 0) await Promise.all([...scope.storeRaises]);
    const lsn = scope.needed;
    if (lsn === 0n) return undefined;
    // A router made just now may not have learned the cluster's identity yet: wait for its checks.
    if (this.#identity() === undefined) await this.#identitySettled();
    const systemIdentifier = this.#identity();
    if (systemIdentifier === undefined) return undefined;
    return encodeToken({ lsn, systemIdentifier }, this.#options.tokenSecrets[0]);
  }

  /** Stops retrying raises; the router is closing. */
  close(): void {
    this.#pendingRaises?.close();
  }

  // ------------------------------------------------------------------ tokens

  #decodeToken(scope: ConsistencyScope): void {
    const text = scope.tokenText;
    const systemIdentifier = this.#identity();
    if (text === undefined || systemIdentifier === undefined) return;
    scope.tokenText = undefined;
    let lsn: bigint;
    try {
      // decodeToken looks at the length before anything else, so an oversized value costs nothing.
      const secrets = this.#options.tokenSecrets;
      lsn = decodeToken(text, { systemIdentifier, secret: secrets.length > 0 ? secrets : undefined }).lsn;
    } catch (error) {
      if (!isLaglessError(error, 'INVALID_TOKEN')) throw error;
      this.#reject(scope, error);
      return;
    }
    this.#tokens.accepted++;
    const latest = this.#primary.history.latestLsn;
    const replayed = this.#replayedBySome();
    // Seen on the primary, or replayed by a replica (which cannot be ahead of its primary): real.
    if ((latest !== undefined && lsn <= latest) || (replayed !== undefined && lsn <= replayed)) scope.raise(lsn);
    else if (lsn > scope.requiredLsn) {
      scope.claimLsn = lsn;
      // Asked now, so the answer is usually in by the time the request reads.
      void this.verifyClaims([scope]);
    }
  }

  #acceptClaim(scope: ConsistencyScope): void {
    const claim = scope.claimLsn;
    scope.claimLsn = undefined;
    if (claim !== undefined) scope.raise(claim);
  }

  #reject(scope: ConsistencyScope, error: LaglessError): void {
    const reason = (error.context.reason ?? 'malformed') as TokenRejectionReason;
    this.#tokens.rejected++;
    this.#events.emit('token-rejected', { reason, error });
    try {
      scope.onTokenRejected?.(reason);
    } catch {
      // The caller's hook cannot fail the request either.
    }
  }

  // ------------------------------------------------------------------ token store

  #loadFromStore(scope: ConsistencyScope, key: string): void {
    const store = this.#options.tokenStore;
    if (!store) throw new LaglessError('INVALID_OPTION', 'session({ key }) needs the tokenStore option');
    if (typeof key !== 'string' || key.length === 0) {
      throw invalidOption('session(init).key', 'a non-empty string', key, { conceal: true });
    }
    scope.storeKey = key;
    if (!this.#storeChecked) {
      this.#storeChecked = true;
      void this.#checkStore(store);
    }
    // Loaded alongside the request's own work; only a read waits for it.
    scope.storeLoad = this.#lookup(store, key).then(
      (lsn) => scope.raise(lsn),
      (error: unknown) => {
        scope.storeFailed = true;
        this.#storeFailed('get', error);
      },
    );
  }

  async #lookup(store: TokenStore, key: string): Promise<bigint> {
    const found = await store.get(key, this.#options.tokenTtlMs);
    const lookup = normalizeLookup(found);
    this.#storeAnswered();
    let lsn = lookup.lsn ?? 0n;
    const owed = this.#pendingRaises?.lsnFor(key);
    if (owed !== undefined && owed > lsn) lsn = owed;
    if (lookup.loss) {
      let floor = lookup.loss.floor;
      if (floor === undefined) {
        floor = await this.#primary.walProbe.fresh();
        store.recordLossFloor?.(key, lookup.loss.epoch, floor).catch((error: unknown) => {
          this.#events.emit('store-error', { operation: 'raise', error });
        });
      }
      if (lookup.loss.confirmed) this.#reportLoss(lookup.loss.epoch, floor);
      if (floor > lsn) lsn = floor;
    }
    return lsn;
  }

  #reportLoss(epoch: string, floor: bigint): void {
    if (this.#lossEpochsSeen.has(epoch)) return;
    // Bounded: an epoch per loss event, and losses are rare.
    if (this.#lossEpochsSeen.size > 1000) this.#lossEpochsSeen.clear();
    this.#lossEpochsSeen.add(epoch);
    this.#events.stateChange(
      'store-data-lost',
      { floorLsn: formatLsn(floor) },
      () =>
        `token store lost data (restarted empty, flushed or failed over): keys it no longer knows now require ${formatLsn(floor)}, the primary's position when the loss was found`,
    );
  }

  #raiseInStore(scope: ConsistencyScope, lsn: bigint): void {
    const store = this.#options.tokenStore;
    const key = scope.storeKey;
    if (!store || key === undefined) return;
    const ttlMs = this.#options.tokenTtlMs;
    const raise = store.raise(key, lsn, ttlMs).then(
      () => this.#storeAnswered(),
      (error: unknown) => {
        this.#storeFailed('raise', error);
        this.#pendingRaises?.add(key, lsn, ttlMs);
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

  async #checkStore(store: TokenStore): Promise<void> {
    if (typeof store.check !== 'function') return;
    let warnings: string[];
    try {
      warnings = await store.check();
    } catch (error) {
      this.#events.emit('store-error', { operation: 'check', error });
      return;
    }
    for (const message of warnings) {
      this.#events.stateChange('store-warning', { message }, () => `token store: ${message}`);
    }
  }

  #storeAnswered(): void {
    if (!this.#storeDown) return;
    this.#storeDown = false;
    this.#events.stateChange('store-up', {}, () => 'token store answers again');
  }

  #storeFailed(operation: 'get' | 'raise', error: unknown): void {
    this.#events.emit('store-error', { operation, error });
    if (this.#storeDown) return;
    this.#storeDown = true;
    const reason = redactSecrets(error instanceof Error ? error.message : String(error));
    this.#events.stateChange(
      'store-down',
      { error, reason },
      () =>
        `token store unavailable: ${reason}; keyed sessions read from the primary, and their raises are retried until they land`,
    );
  }
}

function normalizeLookup(found: unknown): TokenLookup {
  if (found === undefined) return { lsn: undefined };
  if (typeof found === 'bigint') return { lsn: checkedLsn(found) };
  if (typeof found === 'object' && found !== null) {
    const lookup = found as TokenLookup;
    if (lookup.lsn !== undefined) checkedLsn(lookup.lsn);
    if (lookup.loss !== undefined && lookup.loss.floor !== undefined) checkedLsn(lookup.loss.floor);
    return lookup;
  }
  throw new LaglessError('TOKEN_STORE_UNAVAILABLE', 'the token store returned neither an LSN nor a lookup');
}

function checkedLsn(lsn: unknown): bigint {
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) {
    throw new LaglessError('TOKEN_STORE_UNAVAILABLE', 'the token store returned something that is not an LSN');
  }
  return lsn;
}
