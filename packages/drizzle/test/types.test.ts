// Type-level tests, checked by `tsc -p tsconfig.tests.json`: the routed database has the primary's
// type surface, plus $primary, $replicas and $lagless. The bodies never run (no database here).
import type { RouterStats } from '@lagless/core';
import { eq, type InferSelectModel } from 'drizzle-orm';
import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { withReplicas as drizzleWithReplicas, type PgWithReplicas } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type pg from 'pg';
import type postgres from 'postgres';
import { describe, expectTypeOf, it } from 'vitest';
import { type LaglessDatabase, withReplicas } from '../src/index.js';
import { items, schema } from './schema.js';

type Item = InferSelectModel<typeof items>;

function nodePostgresSurface(pool: pg.Pool) {
  const primary = drizzlePg(pool, { schema });
  const replica = drizzlePg(pool, { schema });
  type Q = typeof primary;
  const db = withReplicas(primary, [replica]);

  expectTypeOf(db).toEqualTypeOf<LaglessDatabase<Q>>();
  expectTypeOf(db).toExtend<Q>();
  expectTypeOf(db).toExtend<NodePgDatabase<typeof schema> & { $client: pg.Pool }>();
  // A drop-in: whatever accepted drizzle's withReplicas result accepts ours.
  expectTypeOf(db).toExtend<PgWithReplicas<Q>>();
  expectTypeOf(db.$primary).toEqualTypeOf<Q>();
  expectTypeOf(db.$replicas).toEqualTypeOf<Q[]>();
  expectTypeOf(db.$client).toEqualTypeOf<pg.Pool>();

  // Builders and their results are the primary's, unchanged.
  expectTypeOf(db.select().from(items)).toEqualTypeOf(primary.select().from(items));
  expectTypeOf(db.insert(items).values({ note: 'x' }).returning()).toEqualTypeOf(
    primary.insert(items).values({ note: 'x' }).returning(),
  );
  expectTypeOf(db.update(items).set({ note: 'y' }).where(eq(items.id, 1))).toEqualTypeOf(
    primary.update(items).set({ note: 'y' }).where(eq(items.id, 1)),
  );
  expectTypeOf(db.delete(items)).toEqualTypeOf(primary.delete(items));
  expectTypeOf(db.$count(items)).toEqualTypeOf(primary.$count(items));
  expectTypeOf(db.query.items.findMany({ with: { tags: true } })).toEqualTypeOf(
    primary.query.items.findMany({ with: { tags: true } }),
  );
  expectTypeOf(db.transaction<number>).toEqualTypeOf(primary.transaction<number>);
  expectTypeOf(db.execute).toEqualTypeOf(primary.execute);
  const selected = db.select().from(items);
  expectTypeOf<Awaited<typeof selected>>().toEqualTypeOf<Item[]>();

  // drizzle's getReplica receives and returns this database type.
  withReplicas(primary, [replica], (replicas) => {
    expectTypeOf(replicas).toEqualTypeOf<Q[]>();
    return replicas[0] ?? primary;
  });
  // The same call drizzle's own withReplicas takes compiles against ours.
  drizzleWithReplicas(primary, [replica], (replicas) => replicas[0] ?? primary);

  expectTypeOf(db.$lagless.stats()).toEqualTypeOf<RouterStats>();
  expectTypeOf(db.$lagless.session(async () => 1)).toEqualTypeOf<Promise<number>>();
  expectTypeOf(db.$lagless.session({ token: 't' }, () => 'a')).toEqualTypeOf<Promise<string>>();
  expectTypeOf(db.$lagless.token()).toEqualTypeOf<Promise<string | undefined>>();

  // Options are typed: a typo or a wrong value does not compile.
  // @ts-expect-error no such balancer
  withReplicas(primary, [replica], { balancer: 'fastest' });
  // @ts-expect-error the nodes are arguments, not options
  withReplicas(primary, [replica], { primary });
  // @ts-expect-error replicas are databases of the primary's type
  withReplicas(primary, [pool]);
}

function postgresJsSurface(client: postgres.Sql) {
  const primary = drizzlePostgresJs(client, { schema });
  type Q = typeof primary;
  const db = withReplicas(primary, [drizzlePostgresJs(client, { schema })], { consistency: 'global' });
  expectTypeOf(db).toExtend<PostgresJsDatabase<typeof schema> & { $client: postgres.Sql }>();
  expectTypeOf(db.$primary).toEqualTypeOf<Q>();
  expectTypeOf(db.select().from(items)).toEqualTypeOf(primary.select().from(items));
  expectTypeOf(db.execute).toEqualTypeOf(primary.execute);
}

describe('types', () => {
  it('are checked by tsc (the bodies are never called)', () => {
    expectTypeOf(nodePostgresSurface).toBeFunction();
    expectTypeOf(postgresJsSurface).toBeFunction();
  });
});
