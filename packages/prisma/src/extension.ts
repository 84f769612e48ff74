import {
  createRouter,
  invalidOption,
  isConnectionLevelError,
  LaglessError,
  type LaglessHandle,
  type ReadOptions,
  ROUTER_OPTION_NAMES,
  type Router,
  type RouterOptions,
  type SessionInit,
} from '@lagless/core';
import type { PrismaClientExtends } from '@prisma/client/extension';
import { Prisma } from '@prisma/client/extension';
import type { DefaultArgs, InternalArgs } from '@prisma/client/runtime/client';
import { isLaglessAdapter, type LaglessAdapter } from './adapter.js';
import { NodeConnection } from './node-connection.js';
import { BATCHED_OPERATIONS, RAW_OPERATIONS, READ_OPERATIONS } from './operations.js';
import { clientAdapterFactory, isTransactionClient, operationInTransaction } from './prisma-compat.js';
import {
  newOperation,
  type Requirement,
  type RouteMode,
  RoutingState,
  type TransactionWrites,
} from './route-context.js';

/** What `$extends()` takes: the same shape `Prisma.defineExtension` (and the official extension) returns. */
// biome-ignore lint/suspicious/noExplicitAny: Prisma types an extension's client parameter as any.
export type ReadReplicasExtension = (client: any) => PrismaClientExtends<
  // biome-ignore lint/complexity/noBannedTypes: Prisma's own "no result/model/query extension" is {}.
  InternalArgs<{}, {}, {}, ReadReplicasClientMethods> & DefaultArgs
>;

/** The part of a PrismaClient the drop-in path uses. */
export interface PrismaClientLike {
  $connect(): Promise<void>;
  $disconnect(): Promise<void>;
  $queryRawUnsafe(sql: string, ...values: unknown[]): Promise<unknown>;
}

/** Options of {@link readReplicas}. */
export interface ReadReplicasOptions extends Omit<RouterOptions<PrismaClientLike>, 'primary' | 'replicas'> {
  /**
   * Drop-in path, as `@prisma/extension-read-replicas` takes them: one PrismaClient per replica,
   * each read re-run through one of them. Slower than the fast path (it splits Prisma's findUnique
   * batching). Router options (balancer, consistency, ...) apply to this path only; the fast path
   * takes them in `laglessAdapter()`.
   * @default undefined (fast path: the client's adapter must come from `laglessAdapter()`)
   */
  replicas?: ReadonlyArray<PrismaClientLike>;
  /**
   * The fast path's adapter, when it cannot be found on the client (it normally is).
   * @default the client's own adapter
   */
  adapter?: LaglessAdapter;
  /**
   * Where `$queryRaw` and `$queryRawUnsafe` run. `'replica'` suits read-only raw SQL; a raw query
   * that writes must then go through `$primary()`. `$executeRaw*` always run on the primary.
   * @default 'primary'
   */
  rawQueries?: 'primary' | 'replica';
}

/** `prisma.$lagless`: the one `$lagless` surface of every lagless adapter. */
export type LaglessClientApi = LaglessHandle<unknown>;

/** What `readReplicas()` adds to a client. */
export type ReadReplicasClientMethods = {
  /** This client with every operation on the primary (inside a transaction: the transaction). */
  $primary<T extends object>(this: T): Omit<T, '$primary' | '$replica'>;
  /** This client with every operation on a replica; throws inside a transaction. */
  $replica<T extends object>(this: T): Omit<T, '$primary' | '$replica'>;
  $lagless: LaglessClientApi;
  $connect(): Promise<void>;
  $disconnect(): Promise<void>;
};

interface QueryParams {
  model?: string;
  operation: string;
  args: unknown;
  query: (args: unknown) => Promise<unknown>;
}

interface ExtendableClient {
  $extends(extension: object): unknown;
  $connect(): Promise<void>;
  $disconnect(): Promise<void>;
}

type Invoke = (client: unknown, params: QueryParams) => Promise<unknown>;

/** One routing engine behind the extension: the fast path's adapter or the drop-in path's clients. */
interface Engine {
  readonly routing: RoutingState;
  router(): Router<unknown>;
  /** Runs one operation in the given mode. */
  run(mode: RouteMode, forced: boolean, params: QueryParams, isRead: boolean): Promise<unknown>;
  /** `$lagless.close()`: the router, and whatever connections of its own the engine opened. */
  close(): Promise<void>;
  connect?(): Promise<void>;
  disconnect?(): Promise<void>;
  /** Wraps a session's body (the drop-in path keeps per-session state of its own). */
  inSession?<T>(fn: () => T): T;
  /** A write ran inside a transaction, whose commit this engine cannot see. */
  transactionWrite?(): void;
  /** Records such writes of the current session, before its next operation or token. */
  settleTransactionWrites?(): Promise<unknown> | undefined;
}

/** The LSN the current scope requires, for reads that may be merged with other scopes' reads. */
async function scopeRequirement(router: Router<unknown>): Promise<Requirement> {
  try {
    return await router.requiredLsn();
  } catch {
    // Its requirement is unknown (e.g. the token store is down): only the primary is safe.
    return 'primary';
  }
}

function modelKey(model: string): string {
  return model.charAt(0).toLowerCase() + model.slice(1);
}

const invokeOn: Invoke = (client, { model, operation, args }) => {
  const target = (model === undefined ? client : (client as Record<string, unknown>)[modelKey(model)]) as Record<
    string,
    (args: unknown) => Promise<unknown>
  >;
  const method = target?.[operation];
  if (typeof method !== 'function') {
    throw new LaglessError(
      'INVALID_OPTION',
      `replica client has no ${model ? `${modelKey(model)}.` : ''}${operation}()`,
    );
  }
  // `$queryRawUnsafe(sql, ...values)` reaches an extension as one array: hand the replica client the
  // arguments it would have taken.
  if (model === undefined && operation.endsWith('Unsafe') && Array.isArray(args)) {
    return (method as (...a: unknown[]) => Promise<unknown>).apply(target, args);
  }
  return method.call(target, args);
};

const ON_PRIMARY: ReadOptions = Object.freeze({ primary: true });

function fastEngine(adapter: LaglessAdapter): Engine {
  const { routing } = adapter;
  return {
    routing,
    router: () => adapter.router,
    close: () => adapter.router.close(),
    async run(mode, forced, params, isRead) {
      const router = adapter.router;
      if (mode === 'primary' && !isRead) {
        // One write served by the primary, counted as through every adapter; the scope is raised
        // after it settled (also after a failure: a write can commit and still report an error), in
        // the caller's own async context. Prisma's query promises are lazy: the frame must wrap the
        // awaiting, not the call.
        const operation = newOperation(mode, forced, false, true);
        return router.write(() => routing.run({ operation }, async () => await params.query(params.args)));
      }
      const batched = isRead && BATCHED_OPERATIONS.has(params.operation);
      const release = batched
        ? routing.inflight.add(mode === 'primary' ? 'primary' : forced ? 0n : scopeRequirement(router))
        : undefined;
      const operation = newOperation(mode, forced, batched, false);
      try {
        return await routing.run({ operation }, async () => await params.query(params.args));
      } catch (error) {
        // The router retries a failed first statement elsewhere; a later statement of the same
        // operation (pinned to a replica that just died) cannot move, so the whole read runs again.
        if (!isRead || !operation.pinned?.isReplica || !isConnectionLevelError(error)) throw error;
        const retry = newOperation(mode, forced, batched, false);
        return await routing.run({ operation: retry }, async () => await params.query(params.args));
      } finally {
        release?.();
      }
    },
  };
}

/**
 * The probe connection of one drop-in node: opened from the driver adapter factory its PrismaClient
 * was created with, so probes never pass through that client (its query log, `$on('query')` events
 * and extensions see only the application's own queries).
 */
function probeConnection(client: unknown, option: string, name: string, isReplica: boolean): NodeConnection {
  const factory = clientAdapterFactory(client, option);
  if (factory === undefined) {
    throw invalidOption(option, 'a PrismaClient created with a driver adapter (new PrismaClient({ adapter }))', client);
  }
  if (isLaglessAdapter(factory)) {
    throw invalidOption(
      'replicas',
      'no replica clients for a client on laglessAdapter() (its replicas belong in laglessAdapter({ replicas }))',
      'an array',
    );
  }
  return new NodeConnection(name, factory, isReplica);
}

function dropInEngine(base: ExtendableClient, options: ReadReplicasOptions): Engine {
  const replicas = options.replicas ?? [];
  replicas.forEach((replica, i) => {
    if (typeof replica?.$queryRawUnsafe !== 'function') {
      throw invalidOption(`replicas[${i}]`, 'a PrismaClient', replica);
    }
  });
  const routerOptions: Partial<RouterOptions<PrismaClientLike>> = {};
  // Core's list, checked against RouterOptions when core compiles: a new option cannot be dropped here.
  for (const key of ROUTER_OPTION_NAMES) {
    if (options[key] !== undefined) (routerOptions as Record<string, unknown>)[key] = options[key];
  }
  const connections = [
    probeConnection(base, 'the client readReplicas() extends', 'primary', false),
    ...replicas.map((client, i) => probeConnection(client, `replicas[${i}]`, `replica-${i}`, true)),
  ];
  const node = (connection: NodeConnection, client: PrismaClientLike) => ({
    name: connection.name,
    client,
    query: (sql: string) => connection.query(sql),
  });
  const [primaryConnection, ...replicaConnections] = connections as [NodeConnection, ...NodeConnection[]];
  const router: Router<PrismaClientLike> = createRouter({
    ...routerOptions,
    primary: node(primaryConnection, base as unknown as PrismaClientLike),
    replicas: replicas.map((client, i) => node(replicaConnections[i] as NodeConnection, client)),
  });
  // A PrismaPg over the application's own pg.Pool shares it: ending it twice is no failure of ours.
  const closeConnections = () => Promise.all(connections.map((c) => c.dispose(false).catch(() => undefined)));
  const routing = new RoutingState();
  // The drop-in path cannot see a transaction's COMMIT (it happens inside the primary client's own
  // adapter). A write inside a transaction is remembered instead, and the next operation of the same
  // session (which the caller starts after awaiting the transaction) records it first: one write
  // served by the primary, the scope raised past it.
  const outsideSessions: TransactionWrites = { pending: false };
  const transactionWrites = () => routing.frame().transactionWrites ?? outsideSessions;
  const settleTransactionWrites = (): Promise<unknown> | undefined => {
    const writes = transactionWrites();
    if (!writes.pending) return undefined;
    writes.pending = false;
    return router.write(() => undefined);
  };
  return {
    routing,
    router: () => router,
    inSession: (fn) => routing.run({ transactionWrites: { pending: false } }, fn),
    transactionWrite() {
      transactionWrites().pending = true;
    },
    settleTransactionWrites,
    async run(mode, forced, params, isRead) {
      const settling = settleTransactionWrites();
      if (settling) await settling;
      if (mode === 'replica') {
        // The primary's own pipeline (with this client's other extensions) serves a fallback.
        return router.read(
          (client, target) => (target.role === 'primary' ? params.query(params.args) : invokeOn(client, params)),
          // `$replica()` asks for a replica whatever it has replayed.
          { anyReplica: forced },
        );
      }
      // A read `$primary()` forces: counted, and a session's later replica reads show no older data.
      if (isRead) return router.read(() => params.query(params.args), ON_PRIMARY);
      return router.write(() => params.query(params.args));
    },
    async close() {
      await router.close();
      await closeConnections();
    },
    async connect() {
      await Promise.all([base.$connect(), ...replicas.map((r) => r.$connect())]);
    },
    async disconnect() {
      await router.close();
      await Promise.all([base.$disconnect(), ...replicas.map((r) => r.$disconnect())]);
      await closeConnections();
    },
  };
}

function resolveEngine(base: ExtendableClient, options: ReadReplicasOptions): Engine {
  if (options.replicas !== undefined) {
    if (!Array.isArray(options.replicas)) {
      throw invalidOption('replicas', 'an array of PrismaClients', options.replicas);
    }
    return dropInEngine(base, options);
  }
  const adapter = options.adapter ?? clientAdapterFactory(base, 'adapter');
  if (!isLaglessAdapter(adapter)) {
    throw invalidOption(
      options.adapter === undefined ? 'replicas' : 'adapter',
      '`replicas: PrismaClient[]`, or a client created with `adapter: laglessAdapter({ primary, replicas })`',
      options.adapter === undefined ? options.replicas : options.adapter,
    );
  }
  const misplaced = ROUTER_OPTION_NAMES.filter((key) => options[key] !== undefined);
  if (misplaced.length > 0) {
    const first = misplaced[0] as (typeof misplaced)[number];
    throw invalidOption(
      first,
      `no router option here: with laglessAdapter(), pass ${misplaced.join(', ')} to laglessAdapter(), not readReplicas()`,
      options[first],
    );
  }
  return fastEngine(adapter);
}

const WRAPPED_CLIENT_METHODS = new Set([
  '$queryRaw',
  '$queryRawUnsafe',
  '$executeRaw',
  '$executeRawUnsafe',
  '$queryRawTyped',
]);

/**
 * Wraps a lazy PrismaPromise so that whoever awaits it does so with `mode` forced. Query extension
 * hooks run outermost-first in the order extensions were applied, so a hook added by `$primary()`
 * would run after ours: the choice has to reach our hook through the async context instead.
 */
function forcePromise(promise: unknown, mode: RouteMode, routing: RoutingState): unknown {
  if (typeof promise !== 'object' || promise === null || typeof (promise as PromiseLike<unknown>).then !== 'function') {
    return promise;
  }
  const lazy = promise as Promise<unknown>;
  const then = lazy.then;
  const forcedThen: Promise<unknown>['then'] = (onFulfilled, onRejected) =>
    routing.run({ forced: mode }, () => then.call(lazy, onFulfilled, onRejected)) as never;
  const methods = new Map<PropertyKey, unknown>([
    ['then', forcedThen],
    ['catch', (onRejected?: (error: unknown) => unknown) => forcedThen(undefined, onRejected)],
    [
      'finally',
      (onFinally?: () => void) =>
        forcedThen(
          (value) => {
            onFinally?.();
            return value;
          },
          (error: unknown) => {
            onFinally?.();
            throw error;
          },
        ),
    ],
  ]);
  // Everything else (requestTransaction, the PrismaPromise tag, fluent relations) is the original's.
  return new Proxy(lazy, {
    get: (target, property) => (methods.has(property) ? methods.get(property) : Reflect.get(target, property, target)),
  });
}

/** A view of `client` whose model operations and raw queries run in `mode`. */
function forceClient(client: object, mode: RouteMode, routing: RoutingState): unknown {
  const delegates = new Map<PropertyKey, unknown>();
  return new Proxy(client, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof property === 'string' && WRAPPED_CLIENT_METHODS.has(property) && typeof value === 'function') {
        return (...args: unknown[]) =>
          forcePromise((value as (...a: unknown[]) => unknown).apply(target, args), mode, routing);
      }
      if (typeof property !== 'string' || property.startsWith('$') || typeof value !== 'object' || value === null) {
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      // A model delegate (prisma.user): wrap its operations.
      let delegate = delegates.get(property);
      if (!delegate) {
        delegate = new Proxy(value, {
          get(model, operation, modelReceiver) {
            const method: unknown = Reflect.get(model, operation, modelReceiver);
            if (typeof method !== 'function') return method;
            return (...args: unknown[]) =>
              forcePromise((method as (...a: unknown[]) => unknown).apply(model, args), mode, routing);
          },
        });
        delegates.set(property, delegate);
      }
      return delegate;
    },
  });
}

function isReadOperation(params: QueryParams, rawQueries: 'primary' | 'replica'): boolean {
  if (params.model !== undefined) return READ_OPERATIONS.has(params.operation);
  return rawQueries === 'replica' && (params.operation === '$queryRaw' || params.operation === '$queryRawUnsafe');
}

/**
 * Read replicas for Prisma 7: reads to a replica, writes and transactions to the primary,
 * read-your-writes in `$lagless.session()`.
 *
 * Fast path: `new PrismaClient({ adapter: laglessAdapter({ primary, replicas }) }).$extends(readReplicas())`.
 * Drop-in path: `new PrismaClient({ adapter }).$extends(readReplicas({ replicas: [replicaClient] }))`.
 */
export function readReplicas(options: ReadReplicasOptions = {}): ReadReplicasExtension {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('readReplicas(options)', 'an object', options);
  }
  const rawQueries = options.rawQueries ?? 'primary';
  if (rawQueries !== 'primary' && rawQueries !== 'replica') {
    throw invalidOption('rawQueries', "'primary' | 'replica'", rawQueries);
  }
  const extension = (client: unknown): unknown => {
    const base = client as ExtendableClient;
    const engine = resolveEngine(base, options);
    const forcedClients = new WeakMap<object, Map<RouteMode, unknown>>();
    const forcedClient = (context: ExtendableClient, mode: RouteMode): unknown => {
      let byMode = forcedClients.get(context);
      if (!byMode) {
        byMode = new Map();
        forcedClients.set(context, byMode);
      }
      let forced = byMode.get(mode);
      if (!forced) {
        forced = forceClient(context, mode, engine.routing);
        byMode.set(mode, forced);
      }
      return forced;
    };

    const api: LaglessClientApi = {
      ready: () => engine.router().ready(),
      close: () => engine.close(),
      stats: () => engine.router().stats(),
      session: ((initOrFn: SessionInit | (() => unknown), maybeFn?: () => unknown) => {
        const fn = (maybeFn ?? initOrFn) as () => unknown;
        const body = engine.inSession ? () => engine.inSession?.(fn) : fn;
        return maybeFn === undefined
          ? engine.router().session(body)
          : engine.router().session(initOrFn as SessionInit, body);
      }) as LaglessClientApi['session'],
      token: async () => {
        // A token taken right after a drop-in `$transaction` must carry it too.
        await engine.settleTransactionWrites?.();
        return engine.router().token();
      },
      get router() {
        return engine.router();
      },
      [Symbol.asyncDispose]: () => engine.close(),
    };

    return base.$extends({
      name: 'lagless-read-replicas',
      client: {
        $primary() {
          const context = Prisma.getExtensionContext(this) as unknown as ExtendableClient;
          // Inside a transaction the client already is the primary.
          return isTransactionClient(context) ? context : forcedClient(context, 'primary');
        },
        $replica() {
          const context = Prisma.getExtensionContext(this) as unknown as ExtendableClient;
          if (isTransactionClient(context)) {
            throw new LaglessError(
              'IN_TRANSACTION',
              'Cannot use $replica() inside a transaction: a transaction runs on the primary, and a replica read from it would not see its writes',
            );
          }
          return forcedClient(context, 'replica');
        },
        $lagless: api,
        async $connect() {
          await (engine.connect ? engine.connect() : base.$connect());
        },
        async $disconnect() {
          await (engine.disconnect ? engine.disconnect() : base.$disconnect());
        },
      },
      query: {
        $allOperations(params: QueryParams) {
          // Inside a transaction every statement already runs on the transaction's connection.
          if (operationInTransaction(params)) {
            if (!isReadOperation(params, 'replica')) engine.transactionWrite?.();
            return params.query(params.args);
          }
          const { routing } = engine;
          const forced = routing.frame().forced;
          if (forced !== undefined) {
            // Nested operations (started while this one is awaited) must not inherit the choice.
            return routing.run({ forced: undefined }, () =>
              engine.run(forced, true, params, isReadOperation(params, forced === 'replica' ? 'replica' : 'primary')),
            );
          }
          const isRead = isReadOperation(params, rawQueries);
          if (!isRead && !RAW_OPERATIONS.has(params.operation) && params.model === undefined) {
            return params.query(params.args);
          }
          return engine.run(isRead ? 'replica' : 'primary', false, params, isRead);
        },
      },
    });
  };
  return Prisma.defineExtension(extension as never) as never;
}
