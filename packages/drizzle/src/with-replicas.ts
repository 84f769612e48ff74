import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type BalancerFunction,
  type LaglessHandle as CoreLaglessHandle,
  createRouter,
  invalidOption,
  laglessHandle,
  type ReadOptions,
  type Router,
  type RouterNode,
} from '@lagless/core';
import { is, sql } from 'drizzle-orm';
import { PgDatabase, type PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations, TablesRelationalConfig } from 'drizzle-orm/relations';
import { isDataModifyingCte } from './cte.js';
import { assertSupportedDrizzle, databaseInternals, READING_WITH_BUILDERS } from './drizzle-compat.js';
import { type GetReplica, resolveOptions, type WithReplicasOptions } from './options.js';
import { RoutingSession } from './routing-session.js';

/** What `db.$lagless` offers: the one `$lagless` surface of every lagless adapter. */
export type LaglessHandle<Q> = CoreLaglessHandle<Q>;

/** The primary's database type, routed, plus drizzle's `$primary` / `$replicas` and our `$lagless`. */
export type LaglessDatabase<Q> = Q & {
  /** The primary database itself: reads and writes through it bypass routing and token tracking. */
  $primary: Q;
  /** The replica databases as passed in. */
  $replicas: Q[];
  readonly $lagless: LaglessHandle<Q>;
};

type Rows = ReadonlyArray<Record<string, unknown>>;

/** The driver client `drizzle()` puts on every database it makes (public, though not on PgDatabase's type). */
function clientOf(db: unknown): unknown {
  return (db as { $client?: unknown }).$client;
}

interface PgPoolLike {
  query(text: string): Promise<{ rows: Rows }>;
  on?(event: 'error', listener: (error: unknown) => void): unknown;
}
interface PostgresJsLike {
  unsafe(text: string): PromiseLike<Rows>;
}

/**
 * The probe runner for one database. It talks to the driver client underneath drizzle so probes
 * stay out of the user's drizzle logger and cache, and normalises the two drivers' result shapes.
 */
function probeQuery(db: unknown): (text: string) => Promise<Rows> {
  const client = clientOf(db) as Partial<PgPoolLike & PostgresJsLike> | undefined;
  if (typeof client?.unsafe === 'function') {
    const sqlClient = client as PostgresJsLike;
    return async (text) => await sqlClient.unsafe(text);
  }
  if (typeof client?.query === 'function') {
    const pool = client as PgPoolLike;
    return async (text) => (await pool.query(text)).rows;
  }
  const database = db as PgDatabase<PgQueryResultHKT>;
  return async (text) => {
    const result: unknown = await database.execute(sql.raw(text));
    return (Array.isArray(result) ? result : (result as { rows: Rows }).rows) as Rows;
  };
}

function pickerBalancer<Q>(getReplica: GetReplica<Q>, byName: ReadonlyMap<string, Q>): BalancerFunction {
  const names = new Map<Q, string>();
  for (const [name, db] of byName) names.set(db, name);
  return (candidates) => {
    const chosen = getReplica(candidates.map((candidate) => byName.get(candidate.name) as Q));
    // Anything but one of the databases it was given is rejected by the router as INVALID_OPTION.
    return names.get(chosen) as string;
  };
}

/**
 * Routes a drizzle pg database's reads to replicas and its writes to the primary, with health
 * checks, lag awareness and read-your-writes. A drop-in for drizzle-orm's `withReplicas`: the first
 * three arguments are the same (the third may be drizzle's `getReplica` function or our options).
 *
 * Replica: `select`, `selectDistinct`, `selectDistinctOn`, `$count`, relational `query.*`, and
 * `with(...)` whose CTEs only read. Primary: `insert`, `update`, `delete`, `execute`,
 * `transaction`, `refreshMaterializedView`, and `with(...)` holding a data-modifying CTE.
 *
 * The node is chosen when a query runs (awaited, `.execute()`d, or a prepared query executed),
 * not when it is built, so a query built once and run later still follows health and consistency.
 */
export function withReplicas<
  HKT extends PgQueryResultHKT,
  TFullSchema extends Record<string, unknown>,
  TSchema extends TablesRelationalConfig,
  Q extends PgDatabase<
    HKT,
    TFullSchema,
    TSchema extends Record<string, unknown> ? ExtractTablesWithRelations<TFullSchema> : TSchema
  >,
>(primary: Q, replicas: readonly Q[], options?: GetReplica<Q> | WithReplicasOptions<Q>): LaglessDatabase<Q> {
  if (!is(primary, PgDatabase)) throw invalidOption('primary', 'a drizzle pg database', primary);
  if (!Array.isArray(replicas)) throw invalidOption('replicas', 'an array of drizzle pg databases', replicas);
  replicas.forEach((replica, i) => {
    if (!is(replica, PgDatabase)) throw invalidOption(`replicas[${i}]`, 'a drizzle pg database', replica);
    if (replica === primary) throw invalidOption(`replicas[${i}]`, 'a database other than the primary', 'the primary');
  });
  // Before anything is built on them: a drizzle-orm that changed what we rely on is refused here,
  // naming its version and the internal, instead of routing statements wrongly later.
  assertSupportedDrizzle();
  const { dialect, _ } = databaseInternals(primary, 'primary');
  replicas.forEach((replica, i) => {
    databaseInternals(replica, `replicas[${i}]`);
  });
  const resolved = resolveOptions<Q>(options, replicas.length);
  const byName = new Map<string, Q>();
  const replicaNodes: RouterNode<Q>[] = replicas.map((db, i) => {
    const name = resolved.replicaNames[i] as string;
    byName.set(name, db);
    const weight = resolved.replicaWeights?.[i];
    const zone = resolved.replicaZones?.[i];
    return {
      name,
      client: db,
      query: probeQuery(db),
      ...(weight === undefined ? {} : { weight }),
      ...(zone === undefined ? {} : { zone }),
    };
  });
  const router = createRouter<Q>({
    ...resolved.router,
    ...(resolved.getReplica ? { balancer: pickerBalancer(resolved.getReplica, byName) } : {}),
    primary: { name: resolved.primaryName, client: primary, query: probeQuery(primary) },
    replicas: replicaNodes,
  });
  for (const [name, db] of [[resolved.primaryName, primary] as const, ...byName]) {
    // A pg Pool emits 'error' when an idle connection dies (its server killed, a failover). Unheard,
    // that event crashes the process; heard, it ejects the replica (or marks the primary down)
    // before a query trips on it.
    const client = clientOf(db) as Partial<PgPoolLike> | undefined;
    if (typeof client?.on === 'function') client.on('error', (error) => router.reportError(name, error));
  }

  const schema =
    _.schema === undefined ? undefined : { fullSchema: _.fullSchema, schema: _.schema, tableNamesMap: _.tableNamesMap };
  const untyped = router as Router<unknown>;
  // Code handed this database often keeps using it inside its own transaction() callback instead of
  // `tx` (libraries that take a `db` do). Such a read cannot see the transaction's own rows wherever
  // it runs, but on the primary it at least sees everything committed before, which a replica may
  // not have replayed yet: it behaves as it would with no replicas.
  const inTransaction = new AsyncLocalStorage<true>();
  const onPrimary: ReadOptions = Object.freeze({ primary: true });
  const readOptions = () => (inTransaction.getStore() ? onPrimary : undefined);
  // Real drizzle databases whose session defers the choice of node to the router, so every builder,
  // subquery, `$dynamic()` mutation and `.prepare()` behaves exactly as drizzle's own.
  const reads = new PgDatabase(dialect, new RoutingSession(dialect, untyped, 'read', readOptions), schema as never);
  const writes = new PgDatabase(dialect, new RoutingSession(dialect, untyped, 'write'), schema as never);

  const routedWith = (...queries: Parameters<PgDatabase<PgQueryResultHKT>['with']>) => {
    const modifying = queries.some((cte) => isDataModifyingCte(cte, dialect));
    const writeSide = writes.with(...queries) as unknown as Record<string, unknown>;
    if (modifying) return writeSide;
    const readSide = reads.with(...queries) as unknown as Record<string, unknown>;
    // Only the reading builders go to a replica: whatever else `with()` offers, now or in a later
    // drizzle-orm, runs on the primary.
    const routed: Record<string, unknown> = { ...writeSide };
    for (const name of READING_WITH_BUILDERS) routed[name] = readSide[name];
    return routed;
  };

  const handle: LaglessHandle<Q> = laglessHandle(() => router);

  // Inherits everything else from the primary ($client, $with, $cache, _, dialect), so instanceof
  // and drizzle's is(db, PgDatabase) still hold.
  const db = Object.create(primary) as LaglessDatabase<Q>;
  const own = (value: unknown): PropertyDescriptor => ({ value, enumerable: true, configurable: true });
  Object.defineProperties(db, {
    select: own(reads.select.bind(reads)),
    selectDistinct: own(reads.selectDistinct.bind(reads)),
    selectDistinctOn: own(reads.selectDistinctOn.bind(reads)),
    $count: own(reads.$count.bind(reads)),
    query: own(reads.query),
    with: own(routedWith),
    insert: own(writes.insert.bind(writes)),
    update: own(writes.update.bind(writes)),
    delete: own(writes.delete.bind(writes)),
    execute: own(writes.execute.bind(writes)),
    refreshMaterializedView: own(writes.refreshMaterializedView.bind(writes)),
    transaction: own(
      // The commit's position becomes the scope's required LSN, so reads after it see the transaction.
      // The arguments go on exactly as received: drizzle (or a subclass) may tell `undefined` from absent.
      (...args: Parameters<Q['transaction']>) =>
        router.write(() =>
          inTransaction.run(true, () => (primary.transaction as (...a: typeof args) => unknown).apply(primary, args)),
        ),
    ),
    $primary: own(primary),
    $replicas: own([...replicas]),
    $lagless: own(handle),
  });
  return db;
}
