import type { ReadOptions, Router } from '@lagless/core';
import type { Query, SQL } from 'drizzle-orm';
import {
  type PgDialect,
  PgPreparedQuery,
  type PgQueryResultHKT,
  PgSession,
  type PreparedQueryConfig,
} from 'drizzle-orm/pg-core';
import { JOINS_NULLABILITY, queryMetadataOf, queryOf, sessionOf } from './drizzle-compat.js';

/** Which router entry a statement built on a routing session goes through. */
export type Route = 'read' | 'write';

type PrepareArgs = Parameters<PgSession['prepareQuery']>;
/** A node's own prepared query, as far as we call it: whatever drizzle passes goes on unchanged. */
interface NodePrepared {
  execute(...args: unknown[]): Promise<unknown>;
  all?(...args: unknown[]): Promise<unknown>;
  setToken?(token: unknown): unknown;
  [JOINS_NULLABILITY]?: unknown;
}
type Forward<T> = (...args: unknown[]) => Promise<T>;

/**
 * A prepared statement that is not bound to a node yet. Drizzle prepares a statement when a builder
 * is awaited (or `.prepare()`d); we let the router pick the node only at `execute()`, then prepare
 * the same statement on that node's own session, with the arguments drizzle gave us, so retries,
 * failover and LSN waits all apply and the driver-specific result handling stays drizzle's.
 */
export class RoutedPreparedQuery extends PgPreparedQuery<PreparedQueryConfig> {
  /** Set by drizzle's select builder on the prepared query it got back; copied onto each node's. */
  [JOINS_NULLABILITY]: unknown;
  readonly #router: Router<unknown>;
  readonly #route: Route;
  readonly #args: PrepareArgs;
  readonly #readOptions: () => ReadOptions | undefined;
  // Named statements are prepared once per node, like drizzle does per session.
  readonly #perNode = new Map<unknown, NodePrepared>();
  #token: unknown;

  constructor(router: Router<unknown>, route: Route, args: PrepareArgs, readOptions: () => ReadOptions | undefined) {
    // Only getQuery() reads it; drizzle-compat checks that every builder hands one over.
    super(queryOf(args) as Query, undefined, undefined, undefined);
    this.#router = router;
    this.#route = route;
    this.#args = args;
    this.#readOptions = readOptions;
  }

  /** @internal drizzle passes neon's auth token this way; other drivers ignore it. */
  setToken(token: unknown): this {
    this.#token = token;
    return this;
  }

  #on(db: unknown): NodePrepared {
    let prepared = this.#perNode.get(db);
    if (prepared === undefined) {
      prepared = sessionOf(db).prepareQuery(...this.#args) as unknown as NodePrepared;
      if (this[JOINS_NULLABILITY] !== undefined) prepared[JOINS_NULLABILITY] = this[JOINS_NULLABILITY];
      if (this.#token !== undefined) prepared.setToken?.(this.#token);
      this.#perNode.set(db, prepared);
    }
    return prepared;
  }

  #run<T>(fn: (prepared: NodePrepared) => Promise<T>): Promise<T> {
    return this.#route === 'read'
      ? this.#router.read((db) => fn(this.#on(db)), this.#readOptions())
      : this.#router.write((db) => fn(this.#on(db)));
  }

  // Typed as drizzle declares it; at run time drizzle also passes an auth token, which goes on too.
  execute(...args: [placeholderValues?: Record<string, unknown>]): Promise<unknown> {
    return this.#run((prepared) => prepared.execute(...args));
  }

  all(...args: [placeholderValues?: Record<string, unknown>]): Promise<unknown> {
    return this.#run((prepared) => {
      if (typeof prepared.all !== 'function') throw new TypeError('this driver has no all() on prepared queries');
      return prepared.all(...args);
    });
  }
}

/**
 * The session behind our database's builders. Drizzle builders call `session.prepareQuery()` (and
 * `$count` calls `session.count()`) only when they run, which is exactly when the router must
 * choose a node: the AsyncLocalStorage scope of `$lagless.session()` is the one around the `await`.
 */
export class RoutingSession extends PgSession<PgQueryResultHKT, Record<string, unknown>, Record<string, never>> {
  readonly #router: Router<unknown>;
  readonly #route: Route;
  readonly #readOptions: () => ReadOptions | undefined;

  /** `readOptions` is asked at each read, in the caller's async context. */
  constructor(
    dialect: PgDialect,
    router: Router<unknown>,
    route: Route,
    readOptions: () => ReadOptions | undefined = () => undefined,
  ) {
    super(dialect);
    this.#router = router;
    this.#route = route;
    this.#readOptions = readOptions;
  }

  override prepareQuery(...args: PrepareArgs): RoutedPreparedQuery {
    const metadata = queryMetadataOf(args);
    // A data-modifying statement never reaches a replica, whichever builder produced it.
    const route = metadata !== undefined && metadata.type !== 'select' ? 'write' : this.#route;
    return new RoutedPreparedQuery(this.#router, route, args, this.#readOptions);
  }

  // execute, all and count forward every argument drizzle passes (it adds an auth token to some),
  // whatever their declared arity.
  override execute<T>(...args: [query: SQL]): Promise<T> {
    return this.#run((session) => (session.execute as Forward<T>).apply(session, args));
  }

  override all<T = unknown>(...args: [query: SQL]): Promise<T[]> {
    return this.#run((session) => (session.all as Forward<T[]>).apply(session, args));
  }

  // Drivers differ in the shape of a raw result ({ rows } or an array): the node's session knows its own.
  override count(...args: [sql: SQL]): Promise<number> {
    return this.#run((session) => (session.count as Forward<number>).apply(session, args));
  }

  override transaction<T>(): Promise<T> {
    // Our databases route transaction() to the primary before it reaches a session.
    throw new Error('lagless: transactions run on the primary database, not on a routing session');
  }

  #run<T>(fn: (session: PgSession) => Promise<T>): Promise<T> {
    return this.#route === 'read'
      ? this.#router.read((db) => fn(sessionOf(db)), this.#readOptions())
      : this.#router.write((db) => fn(sessionOf(db)));
  }
}
