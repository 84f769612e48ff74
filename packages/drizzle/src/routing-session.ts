import type { ReadOptions, Router } from '@lagless/core';
import type { SQL } from 'drizzle-orm';
import { type PgDialect, PgPreparedQuery, type PgQueryResultHKT, PgSession } from 'drizzle-orm/pg-core';

/**
 * Drizzle's builders keep their session and dialect in fields its public types hide. We read them
 * through this structural view instead of depending on a driver's classes.
 */
export interface DrizzleInternals {
  readonly dialect: PgDialect;
  readonly session: PgSession;
  readonly _: {
    readonly schema: Record<string, unknown> | undefined;
    readonly fullSchema: Record<string, unknown>;
    readonly tableNamesMap: Record<string, string>;
  };
  readonly $client?: unknown;
}

/** Which router entry a statement built on a routing session goes through. */
export type Route = 'read' | 'write';

type QueryMetadata = { type: 'select' | 'update' | 'delete' | 'insert'; tables: string[] };
type PrepareArgs = Parameters<PgSession['prepareQuery']>;
type AnyPrepared = PgPreparedQuery<{ execute: unknown; all: unknown; values: unknown }>;
// `all()` is not on PgPreparedQuery's public type although every pg driver implements it.
type WithAll = AnyPrepared & { all?(placeholderValues?: Record<string, unknown>): Promise<unknown> };

function internals(db: unknown): DrizzleInternals {
  return db as DrizzleInternals;
}

/**
 * A prepared statement that is not bound to a node yet. Drizzle prepares a statement when a builder
 * is awaited (or `.prepare()`d); we let the router pick the node only at `execute()`, then prepare
 * the same statement on that node's own session, so retries, failover and LSN waits all apply and
 * the driver-specific result handling stays drizzle's.
 */
export class RoutedPreparedQuery extends PgPreparedQuery<{ execute: unknown; all: unknown; values: unknown }> {
  /** Read by drizzle's select mapper on the prepared query it got back; copied onto each node's. */
  joinsNotNullableMap: Record<string, boolean> | undefined;
  readonly #router: Router<unknown>;
  readonly #route: Route;
  readonly #args: PrepareArgs;
  readonly #readOptions: () => ReadOptions | undefined;
  // Named statements are prepared once per node, like drizzle does per session.
  readonly #perNode = new Map<unknown, WithAll>();
  #token: unknown;

  constructor(router: Router<unknown>, route: Route, args: PrepareArgs, readOptions: () => ReadOptions | undefined) {
    super(args[0], undefined, undefined, undefined);
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

  #on(db: unknown): WithAll {
    let prepared = this.#perNode.get(db);
    if (prepared === undefined) {
      prepared = internals(db).session.prepareQuery(...this.#args) as WithAll;
      const target = prepared as unknown as {
        joinsNotNullableMap?: Record<string, boolean>;
        setToken?: (token: unknown) => unknown;
      };
      if (this.joinsNotNullableMap !== undefined) target.joinsNotNullableMap = this.joinsNotNullableMap;
      if (this.#token !== undefined) target.setToken?.(this.#token);
      this.#perNode.set(db, prepared);
    }
    return prepared;
  }

  #run<T>(fn: (prepared: WithAll) => Promise<T>): Promise<T> {
    return this.#route === 'read'
      ? this.#router.read((db) => fn(this.#on(db)), this.#readOptions())
      : this.#router.write((db) => fn(this.#on(db)));
  }

  execute(placeholderValues?: Record<string, unknown>): Promise<unknown> {
    return this.#run((prepared) => prepared.execute(placeholderValues));
  }

  all(placeholderValues?: Record<string, unknown>): Promise<unknown> {
    return this.#run((prepared) => {
      if (typeof prepared.all !== 'function') throw new TypeError('this driver has no all() on prepared queries');
      return prepared.all(placeholderValues);
    });
  }

  /** @internal used by batch APIs, which pg drivers do not have; kept for drizzle's type checks. */
  isResponseInArrayMode(): boolean {
    return this.#args[3];
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
    const metadata = args[5] as QueryMetadata | undefined;
    // A data-modifying statement never reaches a replica, whichever builder produced it.
    const route = metadata !== undefined && metadata.type !== 'select' ? 'write' : this.#route;
    return new RoutedPreparedQuery(this.#router, route, args, this.#readOptions);
  }

  override execute<T>(query: SQL): Promise<T> {
    return this.#run((session) => session.execute<T>(query));
  }

  override all<T = unknown>(query: SQL): Promise<T[]> {
    return this.#run((session) => session.all<T>(query));
  }

  // Drivers differ in the shape of a raw result ({ rows } or an array): the node's session knows its own.
  override count(query: SQL): Promise<number> {
    return this.#run((session) => session.count(query));
  }

  override transaction<T>(): Promise<T> {
    // Our databases route transaction() to the primary before it reaches a session.
    throw new Error('lagless: transactions run on the primary database, not on a routing session');
  }

  #run<T>(fn: (session: PgSession) => Promise<T>): Promise<T> {
    return this.#route === 'read'
      ? this.#router.read((db) => fn(internals(db).session), this.#readOptions())
      : this.#router.write((db) => fn(internals(db).session));
  }
}

export { internals };
