import {
  createRouter,
  invalidOption,
  isConnectionLevelError,
  isLaglessError,
  type ReadOptions,
  type Router,
  type RouterOptions,
} from '@lagless/core';
import type {
  ConnectionInfo,
  IsolationLevel,
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  SqlQuery,
  SqlResultSet,
  Transaction,
} from './driver-types.js';
import { NodeConnection } from './node-connection.js';
import { isReadOnlySql } from './operations.js';
import { type OperationRoute, RoutingState } from './route-context.js';

/** A node given to `laglessAdapter`: a driver adapter factory, optionally named and weighted. */
export type LaglessNodeInput =
  | SqlDriverAdapterFactory
  | {
      /** Shows up in stats, events and errors. @default 'primary', 'replica-0', 'replica-1', ... */
      name?: string;
      /** The node's own driver adapter, e.g. `new PrismaPg({ connectionString })`. */
      adapter: SqlDriverAdapterFactory;
      /** Share of reads under the `weighted` balancer. @default 1 */
      weight?: number;
      /** Where the node runs; with the router's `zone`, same-zone replicas serve reads first. @default undefined */
      zone?: string;
    };

/** Options of {@link laglessAdapter}: the nodes, plus every option of the core router. */
export interface LaglessAdapterOptions extends Omit<RouterOptions<NodeConnection>, 'primary' | 'replicas'> {
  /** The primary's driver adapter: writes, transactions and forced reads run there. */
  primary: LaglessNodeInput;
  /** The replicas' driver adapters. An empty list is valid: every read goes to the primary. @default [] */
  replicas?: ReadonlyArray<LaglessNodeInput>;
}

const BRAND = Symbol.for('lagless.prisma.adapter');
const ON_PRIMARY: ReadOptions = Object.freeze({ primary: true });

function isFactory(value: unknown): value is SqlDriverAdapterFactory {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as SqlDriverAdapterFactory).connect === 'function' &&
    typeof (value as SqlDriverAdapterFactory).provider === 'string'
  );
}

function toNode(
  input: unknown,
  option: string,
  defaultName: string,
  isReplica: boolean,
): { node: NodeConnection; weight?: number; zone?: string } {
  if (isFactory(input)) return { node: new NodeConnection(defaultName, input, isReplica) };
  if (typeof input === 'object' && input !== null && isFactory((input as { adapter?: unknown }).adapter)) {
    const { name, adapter, weight, zone } = input as {
      name?: unknown;
      adapter: SqlDriverAdapterFactory;
      weight?: number;
      zone?: string;
    };
    if (name !== undefined && (typeof name !== 'string' || name.length === 0)) {
      throw invalidOption(`${option}.name`, 'a non-empty string', name);
    }
    return {
      node: new NodeConnection(name ?? defaultName, adapter, isReplica),
      ...(weight === undefined ? {} : { weight }),
      ...(zone === undefined ? {} : { zone }),
    };
  }
  throw invalidOption(
    option,
    'a Prisma driver adapter (e.g. new PrismaPg(...)) or { name?, adapter, weight?, zone? }',
    input,
  );
}

/**
 * The driver adapter factory returned by {@link laglessAdapter}. Prisma connects it like any other
 * adapter; every SQL statement it runs goes to the node the router picks for its operation.
 */
export class LaglessAdapter implements SqlDriverAdapterFactory {
  readonly provider = 'postgres' as const;
  readonly adapterName = '@lagless/prisma';
  /** @internal shared with the `readReplicas()` extension over this adapter. */
  readonly routing = new RoutingState();
  readonly [BRAND] = true;
  readonly #primary: NodeConnection;
  readonly #nodes: NodeConnection[];
  readonly #routerOptions: RouterOptions<NodeConnection>;
  #router: Router<NodeConnection> | undefined;

  constructor(options: LaglessAdapterOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('laglessAdapter(options)', 'an object', options);
    }
    const primary = toNode(options.primary, 'primary', 'primary', false);
    if (primary.node.factory.provider !== 'postgres') {
      throw invalidOption('primary', 'a PostgreSQL driver adapter', `a ${primary.node.factory.provider} adapter`);
    }
    if (options.replicas !== undefined && !Array.isArray(options.replicas)) {
      throw invalidOption('replicas', 'an array of driver adapters', options.replicas);
    }
    const replicas = (options.replicas ?? []).map((input, i) => toNode(input, `replicas[${i}]`, `replica-${i}`, true));
    this.#primary = primary.node;
    this.#nodes = [primary.node, ...replicas.map((r) => r.node)];
    const { primary: _p, replicas: _r, ...routerOptions } = options;
    const asRouterNode = ({ node, weight, zone }: { node: NodeConnection; weight?: number; zone?: string }) => ({
      name: node.name,
      client: node,
      query: (sql: string) => node.query(sql),
      ...(weight === undefined ? {} : { weight }),
      ...(zone === undefined ? {} : { zone }),
    });
    this.#routerOptions = { ...routerOptions, primary: asRouterNode(primary), replicas: replicas.map(asRouterNode) };
    // Validates every router option now, where the mistake is, rather than at the first query.
    this.#router = createRouter(this.#routerOptions);
  }

  /** The core router. A client disconnected and used again gets a fresh one (listeners do not carry over). */
  get router(): Router<NodeConnection> {
    if (!this.#router) this.#router = createRouter(this.#routerOptions);
    return this.#router;
  }

  async connect(): Promise<SqlDriverAdapter> {
    const router = this.router;
    const primary = await this.#primary.adapter();
    return new RoutingDriverAdapter(this, router, this.#primary, primary.getConnectionInfo?.());
  }

  /** Closes the router and every node's connections; Prisma calls it on `$disconnect()`. */
  async dispose(): Promise<void> {
    const router = this.#router;
    this.#router = undefined;
    await router?.close();
    await Promise.all(this.#nodes.map((node) => node.dispose(true)));
  }
}

/** True for an adapter made by {@link laglessAdapter} (also across duplicate installs). */
export function isLaglessAdapter(value: unknown): value is LaglessAdapter {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/**
 * A Prisma driver adapter that spreads one PrismaClient over a primary and its replicas: each SQL
 * statement runs on the node chosen for its operation by the `readReplicas()` extension and the
 * core router. Keeping one client keeps Prisma's batching of concurrent `findUnique` calls.
 *
 * ```ts
 * const prisma = new PrismaClient({
 *   adapter: laglessAdapter({ primary: new PrismaPg({ connectionString: PRIMARY }), replicas: [new PrismaPg({ connectionString: REPLICA })] }),
 * }).$extends(readReplicas());
 * ```
 */
export function laglessAdapter(options: LaglessAdapterOptions): LaglessAdapter {
  return new LaglessAdapter(options);
}

class RoutingDriverAdapter implements SqlDriverAdapter {
  readonly provider = 'postgres' as const;
  readonly adapterName = '@lagless/prisma';
  readonly #factory: LaglessAdapter;
  readonly #router: Router<NodeConnection>;
  readonly #primary: NodeConnection;
  readonly #connectionInfo: ConnectionInfo | undefined;

  constructor(
    factory: LaglessAdapter,
    router: Router<NodeConnection>,
    primary: NodeConnection,
    connectionInfo: ConnectionInfo | undefined,
  ) {
    this.#factory = factory;
    this.#router = router;
    this.#primary = primary;
    this.#connectionInfo = connectionInfo;
  }

  queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    return this.#route(query.sql, (adapter) => adapter.queryRaw(query));
  }

  executeRaw(query: SqlQuery): Promise<number> {
    return this.#route(query.sql, (adapter) => adapter.executeRaw(query));
  }

  executeScript(script: string): Promise<void> {
    return this.#router.write(async () => (await this.#primary.adapter()).executeScript(script));
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    const primary = await this.#primary.adapter();
    const tx = await primary.startTransaction(isolationLevel);
    // Prisma sends COMMIT (or ROLLBACK) through the transaction, then calls commit() (or rollback())
    // to release its connection: the outcome is durable here, never before. The transaction counts
    // as one write served by the primary and raises the scope past it, as one does through Drizzle,
    // unless an operation inside the router's write() started it (a nested create): that counts it.
    const end = async (release: () => Promise<void>): Promise<void> => {
      if (this.#factory.routing.frame().operation?.write) return release();
      let released = false;
      try {
        await this.#router.write(() => {
          released = true;
          return release();
        });
      } catch (error) {
        // The router was closed while the transaction ran: its outcome stands, its connection goes back.
        if (released || !isLaglessError(error, 'CLOSED')) throw error;
        await release();
      }
    };
    return wrapTransaction(tx, end);
  }

  getConnectionInfo(): ConnectionInfo {
    return this.#connectionInfo ?? { supportsRelationJoins: true };
  }

  dispose(): Promise<void> {
    return this.#factory.dispose();
  }

  async #route<T>(sql: string, run: (adapter: SqlDriverAdapter) => Promise<T>): Promise<T> {
    const operation = this.#factory.routing.frame().operation;
    if (operation === undefined) {
      // No operation claims this statement. Either Prisma merged findUnique calls into a batch that
      // lost every caller's context (it happens), or someone runs SQL without the extension: then
      // only what cannot write may leave the primary, and the router counts it either way.
      if (!isReadOnlySql(sql)) return this.#router.write(async () => run(await this.#primary.adapter()));
      if (this.#factory.routing.inflight.size > 0) return this.#read(undefined, run);
      return this.#router.read(async () => run(await this.#primary.adapter()), ON_PRIMARY);
    }
    if (operation.pinned) return this.#onPinned(operation.pinned, run);
    if (operation.write) {
      // The operation runs inside the router's write(): it is on the primary already.
      operation.pinned = this.#primary;
      return run(await this.#primary.adapter());
    }
    return this.#read(operation, run);
  }

  async #read<T>(operation: OperationRoute | undefined, run: (adapter: SqlDriverAdapter) => Promise<T>): Promise<T> {
    // A read `$primary()` forces still goes through the router: it counts, and a session's later
    // replica reads must not show older data than it did.
    let primary = operation?.mode === 'primary';
    let minLsn = 0n;
    if (!primary && (operation === undefined || operation.batched)) {
      // This statement may serve several callers' findUnique calls: satisfy the strictest.
      const strictest = await this.#factory.routing.inflight.strictest();
      if (strictest === 'primary') primary = true;
      else minLsn = strictest;
    }
    // `$replica()` asks for a replica whatever it has replayed.
    const anyReplica = operation?.forced === true && operation.mode === 'replica';
    return this.#router.read(
      async (node) => {
        if (operation) operation.pinned = node;
        return run(await node.adapter());
      },
      primary ? ON_PRIMARY : { minLsn, anyReplica },
    );
  }

  async #onPinned<T>(node: NodeConnection, run: (adapter: SqlDriverAdapter) => Promise<T>): Promise<T> {
    try {
      return await run(await node.adapter());
    } catch (error) {
      // A later statement of an operation cannot move (its first result came from this node), so it
      // fails; the router still learns the replica is gone, and the next operation goes elsewhere.
      if (node !== this.#primary && isConnectionLevelError(error)) this.#router.reportReplicaError(node.name, error);
      throw error;
    }
  }
}

/** `tx` with its commit() and rollback() run through `end`. */
function wrapTransaction(tx: Transaction, end: (release: () => Promise<void>) => Promise<void>): Transaction {
  const wrapped: Transaction = {
    provider: tx.provider,
    adapterName: tx.adapterName,
    options: tx.options,
    queryRaw: (query) => tx.queryRaw(query),
    executeRaw: (query) => tx.executeRaw(query),
    commit: () => end(() => tx.commit()),
    rollback: () => end(() => tx.rollback()),
  };
  if (tx.createSavepoint) wrapped.createSavepoint = tx.createSavepoint.bind(tx);
  if (tx.rollbackToSavepoint) wrapped.rollbackToSavepoint = tx.rollbackToSavepoint.bind(tx);
  if (tx.releaseSavepoint) wrapped.releaseSavepoint = tx.releaseSavepoint.bind(tx);
  return wrapped;
}
