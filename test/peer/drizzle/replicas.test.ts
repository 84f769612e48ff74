// Conformance: drizzle-orm's own read-replica suite, run against @lagless/drizzle's withReplicas on a
// real primary with two streaming replicas, over node-postgres (as upstream) and postgres.js.
//
// Ported from https://github.com/drizzle-team/drizzle-orm
//   path:   integration-tests/tests/replicas/postgres.test.ts
//   commit: b7862528fd8fc39bc2653a6c18dad7c1f4e68d10 (the file as last changed in b776df4926a073f583110e5a41e8a11300c134a5)
// drizzle-orm is Apache-2.0 licensed. Every upstream case is here under its upstream name (35).
//
// Upstream runs against drizzle.mock() databases and checks routing by spying on the chosen
// database's builder (`vi.spyOn(read1, 'select')`) as the query is built. We choose the node when
// a query runs and prepare it on that node's session, so those spies see no call although routing
// is right (a documented difference: packages/drizzle/README.md). Each case here asserts the same
// routing intent by which server ran the query instead, with upstream's queries unchanged:
//
// - Reads: replay is paused on each replica at a different point, so the rows a query returns name
//   the node that served it (replica1 holds ids 1-2, replica2 ids 3-5, the primary id 6).
// - Writes: a standby refuses every write (SQLSTATE 25006) whatever it matches, so a write that
//   succeeds ran on the primary; its effect is then read back from the primary.
//
// Where upstream builds something that cannot run against a real database (`db.with({})`,
// `db.insert(users)` without values, `db.$primary.delete({})`, `db.execute(sql``)`), the port runs
// the nearest statement that can, and says so at the line. upstream's `expect(...).rejects` on
// execute() and transaction() came from the mock having no connection; here they succeed.

import { type GetReplica, type LaglessDatabase, type WithReplicasOptions, withReplicas } from '@lagless/drizzle';
import { type Cluster, startCluster } from '@lagless/testkit';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import {
  boolean,
  jsonb,
  type PgDatabase,
  type PgQueryResultHKT,
  pgTable,
  serial,
  text,
  timestamp,
} from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

const usersTable = pgTable('users', {
  id: serial('id' as string).primaryKey(),
  name: text('name').notNull(),
  verified: boolean('verified').notNull().default(false),
  jsonb: jsonb('jsonb').$type<string[]>(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

const users = pgTable('users', {
  id: serial('id' as string).primaryKey(),
});

const schema = { usersTable };
type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

// `name` has a default drizzle's table does not declare, so upstream's `insert(users).values({ id })`
// (users has only id) can run.
const DDL = `CREATE TABLE users (
  id serial PRIMARY KEY,
  name text NOT NULL DEFAULT 'inserted',
  verified boolean NOT NULL DEFAULT false,
  jsonb jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
)`;

type Node = 'primary' | 'replica1' | 'replica2';
/** What each node holds once staged: replay paused on each replica at a different point. */
const HOLDS: Record<Node, readonly number[]> = { replica1: [1, 2], replica2: [3, 4, 5], primary: [6] };
const OWNER = new Map<number, Node>(
  Object.entries(HOLDS).flatMap(([node, ids]) => ids.map((id) => [id, node as Node] as const)),
);

/** The node a full read of `users` came from: the one holding exactly these ids. */
function nodeOf(rows: ReadonlyArray<{ id: unknown }>): string {
  const ids = rows.map((row) => Number(row.id)).sort((a, b) => a - b);
  const node = OWNER.get(ids[0] ?? -1);
  return node !== undefined && ids.join() === HOLDS[node].join() ? node : `no single node: ids [${ids.join()}]`;
}

/** The node a single row (findFirst) came from. */
function nodeOfRow(row: { id: unknown } | undefined): string {
  return OWNER.get(Number(row?.id)) ?? `no node: ${JSON.stringify(row)}`;
}

/** The node a count(*) of `users` came from: the counts differ (2, 3, 1). */
function nodeOfCount(count: unknown): string {
  const node = (Object.keys(HOLDS) as Node[]).find((name) => HOLDS[name].length === Number(count));
  return node ?? `no node counts ${String(count)}`;
}

interface Driver {
  readonly name: string;
  connect(url: string): { db: Db; end(): Promise<void> };
  rows(result: unknown): Array<{ id: unknown }>;
}

const drivers: Driver[] = [
  {
    name: 'node-postgres',
    connect(url) {
      const pool = new pg.Pool({ connectionString: url, max: 2 });
      return { db: drizzlePg(pool, { schema }), end: () => pool.end().catch(() => {}) };
    },
    rows: (result) => (result as { rows: Array<{ id: unknown }> }).rows,
  },
  {
    name: 'postgres.js',
    connect(url) {
      const client = postgres(url, { max: 2, onnotice: () => {} });
      return { db: drizzlePostgresJs(client, { schema }), end: () => client.end({ timeout: 1 }).catch(() => {}) };
    },
    rows: (result) => [...(result as Array<{ id: unknown }>)],
  },
];

describe.each(drivers)('drizzle-orm replicas suite over $name', (driver) => {
  let cluster: Cluster;
  let staged = false;
  const cleanup: Array<() => Promise<void>> = [];

  /** Primary: id 6. replica1: ids 1-2. replica2: ids 3-5. Each replica's replay paused there. */
  async function stage(): Promise<void> {
    const [replica1, replica2] = cluster.replicas;
    if (!replica1 || !replica2) throw new Error('the suite needs two replicas');
    await replica1.resumeReplay();
    await replica2.resumeReplay();
    const fill = async (ids: readonly number[], name: string) => {
      await cluster.primary.query('TRUNCATE users');
      await cluster.primary.query(`INSERT INTO users (id, name) SELECT i, $1 FROM unnest($2::int[]) AS i`, [name, ids]);
      await cluster.waitForReplicas();
    };
    await fill(HOLDS.replica1, 'replica1');
    await replica1.pauseReplay();
    await fill(HOLDS.replica2, 'replica2');
    await replica2.pauseReplay();
    await fill(HOLDS.primary, 'primary');
    // The staging itself, read server-side on each node: the rest of the suite relies on it.
    const held = async (node: { query: Cluster['primary']['query'] }) =>
      nodeOf(await node.query<{ id: number }>('SELECT id FROM users'));
    expect([await held(cluster.primary), await held(replica1), await held(replica2)]).toEqual([
      'primary',
      'replica1',
      'replica2',
    ]);
    staged = true;
  }

  /** A case that wrote on the primary has the nodes staged again before the next one. */
  function writes(): void {
    staged = false;
  }

  async function primaryIds(): Promise<number[]> {
    const rows = await cluster.primary.query<{ id: number }>('SELECT id FROM users ORDER BY id');
    return rows.map((row) => row.id);
  }

  beforeAll(async () => {
    cluster = await startCluster({ replicas: 2 });
    await cluster.primary.query(DDL);
  });

  beforeEach(async () => {
    if (!staged) await stage();
  });

  afterEach(async () => {
    for (const close of cleanup.splice(0).reverse()) await close();
  });

  afterAll(async () => {
    for (const replica of cluster?.replicas ?? []) await replica.resumeReplay().catch(() => {});
    await cluster?.stop();
  });

  /** Three databases as upstream's three mocks: the primary, then replica1 and replica2. */
  function databases(): { primaryDb: Db; read1: Db; read2: Db } {
    const [primaryDb, read1, read2] = [cluster.primary.url, ...cluster.replicas.map((r) => r.url)].map((url) => {
      const connection = driver.connect(url);
      cleanup.push(connection.end);
      return connection.db;
    }) as [Db, Db, Db];
    return { primaryDb, read1, read2 };
  }

  /** Our withReplicas, once its start-up checks have admitted the replicas (until then reads use the primary). */
  async function replicated(
    primary: Db,
    replicas: Db[],
    options?: GetReplica<Db> | WithReplicasOptions<Db>,
  ): Promise<LaglessDatabase<Db>> {
    const db = withReplicas(primary, replicas, options);
    cleanup.push(() => db.$lagless.close());
    await db.$lagless.ready();
    return db;
  }

  describe('[select] read replicas postgres', () => {
    it('primary select', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb, 'select');
      const query = db.$primary.select().from(users);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(query.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query)).toBe('primary');
    });

    it('random replica select', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });

      const query1 = db
        .select({ count: sql`count(*)`.as('count') })
        .from(users)
        .limit(1);
      // Chosen when the query runs, not when it is built.
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(query1.toSQL().sql).toEqual('select count(*) as "count" from "users" limit $1');
      expect(nodeOfCount((await query1)[0]?.count)).toBe('replica1');
      expect(randomMockReplica).toHaveBeenCalledTimes(1);

      const query2 = db.select().from(users);
      expect(query2.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica select', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.select().from(users);
      expect(query1.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.select().from(users);
      expect(query2.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica1');
    });

    it('single read replica select + primary select', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.select({ id: users.id }).from(users);
      expect(query1.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.$primary.select().from(users);
      expect(query2.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query2)).toBe('primary');
    });

    it('always first read select', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });

      const query1 = db.select().from(users);
      expect(query1.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.select().from(users);
      expect(query2.toSQL().sql).toEqual('select "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica1');
    });
  });

  describe('[selectDistinct] read replicas postgres', () => {
    it('primary selectDistinct', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb, 'selectDistinct');
      const query = db.$primary.selectDistinct().from(users);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(query.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query)).toBe('primary');
    });

    it('random replica selectDistinct', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });

      const query1 = db.selectDistinct().from(users);
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(query1.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.selectDistinct().from(users);
      expect(query2.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica selectDistinct', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.selectDistinct().from(users);
      expect(query1.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.selectDistinct().from(users);
      expect(query2.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica1');
    });

    it('single read replica selectDistinct + primary selectDistinct', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.selectDistinct().from(users);
      expect(query1.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.$primary.selectDistinct().from(users);
      expect(query2.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query2)).toBe('primary');
    });

    it('always first read selectDistinct', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });

      const query1 = db.selectDistinct().from(users);
      expect(query1.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.selectDistinct().from(users);
      expect(query2.toSQL().sql).toEqual('select distinct "id" from "users"');
      expect(nodeOf(await query2)).toBe('replica1');
    });
  });

  describe('[with] read replicas postgres', () => {
    // Upstream passes placeholder objects (`{} as any`) and never runs them; real CTEs run here.
    const cte = (db: Db, name: string) => db.$with(name).as(db.select().from(users));

    it('primary with', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb, 'with');
      const [obj1, obj2, obj3, obj4] = ['obj1', 'obj2', 'obj3', 'obj4'].map((name) => cte(db.$primary, name)) as [
        ReturnType<typeof cte>,
        ReturnType<typeof cte>,
        ReturnType<typeof cte>,
        ReturnType<typeof cte>,
      ];

      const query = db.$primary.with(obj1, obj2, obj3, obj4).select().from(obj4);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(spyPrimary).toHaveBeenCalledWith(obj1, obj2, obj3, obj4);
      expect(nodeOf(await query)).toBe('primary');
    });

    it('random replica with', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });

      const query1 = db.with().select().from(users);
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(nodeOf(await query1)).toBe('replica1');

      expect(nodeOf(await db.with().select().from(users))).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica with', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOf(await db.with().select().from(users))).toBe('replica1');
      expect(nodeOf(await db.with().select().from(users))).toBe('replica1');
    });

    it('single read replica with + primary with', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOf(await db.with().select().from(users))).toBe('replica1');
      expect(nodeOf(await db.$primary.with().select().from(users))).toBe('primary');
    });

    it('always first read with', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });
      const obj1 = cte(db, 'obj1');
      const obj2 = cte(db, 'obj2');
      const obj3 = cte(db, 'obj3');

      const query1 = db.with(obj1).select().from(obj1);
      expect(query1.toSQL().sql).toEqual('with "obj1" as (select "id" from "users") select "id" from "obj1"');
      expect(nodeOf(await query1)).toBe('replica1');

      // Upstream checks the arguments reach the replica's with(): here, that both CTEs are in what runs.
      const query2 = db.with(obj2, obj3).select().from(obj3);
      expect(query2.toSQL().sql).toEqual(
        'with "obj2" as (select "id" from "users"), "obj3" as (select "id" from "users") select "id" from "obj3"',
      );
      expect(nodeOf(await query2)).toBe('replica1');
    });
  });

  describe('[update] replicas postgres', () => {
    it('primary update', async () => {
      writes();
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const query1 = db.update(users).set({ id: 1 });
      expect(query1.toSQL().sql).toEqual('update "users" set "id" = $1');
      await query1;
      expect(await primaryIds()).toEqual([1]);

      const query2 = db.update(users).set({ id: 1 });
      expect(query2.toSQL().sql).toEqual('update "users" set "id" = $1');
      await query2;

      const spyPrimary = vi.spyOn(primaryDb, 'update');
      const query3 = db.$primary.update(users).set({ id: 1 });
      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(query3.toSQL().sql).toEqual('update "users" set "id" = $1');
      await query3;
      expect(await primaryIds()).toEqual([1]);
    });
  });

  describe('[delete] replicas postgres', () => {
    it('primary delete', async () => {
      writes();
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const query1 = db.delete(users);
      expect(query1.toSQL().sql).toEqual('delete from "users"');
      await query1;
      expect(await primaryIds()).toEqual([]);

      await cluster.primary.query('INSERT INTO users (id) VALUES (7)');
      const query2 = db.delete(users);
      expect(query2.toSQL().sql).toEqual('delete from "users"');
      await query2;
      expect(await primaryIds()).toEqual([]);

      // Upstream: db.$primary.delete({} as any), which cannot run.
      await cluster.primary.query('INSERT INTO users (id) VALUES (8)');
      const spyPrimary = vi.spyOn(primaryDb, 'delete');
      await db.$primary.delete(users);
      expect(spyPrimary).toHaveBeenCalledWith(users);
      expect(await primaryIds()).toEqual([]);
    });
  });

  describe('[insert] replicas postgres', () => {
    it('primary insert', async () => {
      writes();
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const query = db.insert(users).values({ id: 1 });
      expect(query.toSQL().sql).toEqual('insert into "users" ("id") values ($1)');
      await query;
      expect(await primaryIds()).toEqual([1, 6]);

      // Upstream: db.insert(users), a builder with no values, which cannot run.
      await db.insert(users).values({ id: 2 });
      expect(await primaryIds()).toEqual([1, 2, 6]);

      // Upstream: db.$primary.insert({} as any).
      const spyPrimary = vi.spyOn(primaryDb, 'insert');
      await db.$primary.insert(users).values({ id: 3 });
      expect(spyPrimary).toHaveBeenCalledWith(users);
      expect(await primaryIds()).toEqual([1, 2, 3, 6]);
    });
  });

  describe('[execute] replicas postgres', () => {
    it('primary execute', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      // Upstream: db.execute(sql``), which rejects only because a mock has no connection.
      for (let i = 0; i < 3; i++) {
        expect(nodeOf(driver.rows(await db.execute(sql`select "id" from "users"`)))).toBe('primary');
      }
    });
  });

  describe('[transaction] replicas postgres', () => {
    it('primary transaction', async () => {
      writes();
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb, 'transaction');
      const spyRead1 = vi.spyOn(read1, 'transaction');
      const spyRead2 = vi.spyOn(read2, 'transaction');
      const seen: string[] = [];
      // Upstream's callbacks call tx.select().from({} as any) and expect a rejection the mock caused;
      // these read through tx, so the rows say where the transaction ran.
      const txFn1 = async (tx: Db) => {
        seen.push(nodeOf(await tx.select().from(users)));
      };

      await db.transaction(txFn1);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(spyRead1).toHaveBeenCalledTimes(0);
      expect(spyRead2).toHaveBeenCalledTimes(0);
      expect(spyPrimary).toHaveBeenCalledWith(txFn1);
      // Exactly the caller's arguments: one, not (txFn1, undefined).
      expect(spyPrimary.mock.calls[0]).toHaveLength(1);

      const txFn2 = async (tx: Db) => {
        seen.push(nodeOf(await tx.select().from(users)));
      };

      await db.transaction(txFn2, { isolationLevel: 'repeatable read' });

      expect(spyPrimary).toHaveBeenCalledTimes(2);
      expect(spyPrimary).toHaveBeenNthCalledWith(2, txFn2, { isolationLevel: 'repeatable read' });

      await db.transaction(async (tx) => {
        seen.push(nodeOf(await tx.select().from(users)));
        await tx.insert(users).values({ id: 9 });
      });

      expect(spyPrimary).toHaveBeenCalledTimes(3);
      expect(spyRead1).toHaveBeenCalledTimes(0);
      expect(spyRead2).toHaveBeenCalledTimes(0);
      expect(seen).toEqual(['primary', 'primary', 'primary']);
      expect(await primaryIds()).toEqual([6, 9]);
    });
  });

  describe('[findFirst] read replicas postgres', () => {
    it('primary findFirst', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb.query.usersTable, 'findFirst');
      const obj = {};

      const row = await db.$primary.query.usersTable.findFirst(obj);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(spyPrimary).toHaveBeenCalledWith(obj);
      expect(nodeOfRow(row)).toBe('primary');
      expect(row?.name).toBe('primary');
    });

    it('random replica findFirst', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });
      const par1 = {};

      const query1 = db.query.usersTable.findFirst(par1);
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(nodeOfRow(await query1)).toBe('replica1');

      const query = db.query.usersTable.findFirst();
      expect(query.toSQL().sql).toEqual(
        'select "id", "name", "verified", "jsonb", "created_at" from "users" "usersTable" limit $1',
      );
      expect(nodeOfRow(await query)).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica findFirst', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOfRow(await db.query.usersTable.findFirst())).toBe('replica1');
      expect(nodeOfRow(await db.query.usersTable.findFirst())).toBe('replica1');
    });

    it('single read replica findFirst + primary findFirst', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOfRow(await db.query.usersTable.findFirst())).toBe('replica1');
      expect(nodeOfRow(await db.$primary.query.usersTable.findFirst())).toBe('primary');
    });

    it('always first read findFirst', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });

      expect(nodeOfRow(await db.query.usersTable.findFirst())).toBe('replica1');
      expect(nodeOfRow(await db.query.usersTable.findFirst())).toBe('replica1');
    });
  });

  describe('[findMany] read replicas postgres', () => {
    const findManySql = 'select "id", "name", "verified", "jsonb", "created_at" from "users" "usersTable"';

    it('primary findMany', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb.query.usersTable, 'findMany');
      const obj = {};

      const query = db.$primary.query.usersTable.findMany(obj);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(spyPrimary).toHaveBeenCalledWith(obj);
      expect(query.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query)).toBe('primary');
    });

    it('random replica findMany', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });
      const obj1 = {};
      const obj2 = {};

      const query1 = db.query.usersTable.findMany(obj1);
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(query1.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.query.usersTable.findMany(obj2);
      expect(query2.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query2)).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica findMany', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.query.usersTable.findMany({});
      expect(query1.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.query.usersTable.findMany({});
      expect(query2.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query2)).toBe('replica1');
    });

    it('single read replica findMany + primary findMany', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      const query1 = db.query.usersTable.findMany({});
      expect(query1.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query1)).toBe('replica1');

      const spyPrimary = vi.spyOn(primaryDb.query.usersTable, 'findMany');
      const obj2 = {};
      const query2 = db.$primary.query.usersTable.findMany(obj2);
      expect(spyPrimary).toHaveBeenNthCalledWith(1, obj2);
      expect(query2.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query2)).toBe('primary');
    });

    it('always first read findMany', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });

      const query1 = db.query.usersTable.findMany({});
      expect(query1.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query1)).toBe('replica1');

      const query2 = db.query.usersTable.findMany({});
      expect(query2.toSQL().sql).toEqual(findManySql);
      expect(nodeOf(await query2)).toBe('replica1');
    });
  });

  describe('[$count] read replicas postgres', () => {
    it('primary $count', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      const spyPrimary = vi.spyOn(primaryDb, '$count');
      const count = await db.$primary.$count(users);

      expect(spyPrimary).toHaveBeenCalledTimes(1);
      expect(nodeOfCount(count)).toBe('primary');
    });

    it('random replica $count', async () => {
      const { primaryDb, read1, read2 } = databases();
      const randomMockReplica = vi.fn().mockReturnValueOnce(read1).mockReturnValueOnce(read2);
      const db = await replicated(primaryDb, [read1, read2], () => {
        return randomMockReplica();
      });

      const count = db.$count(users);
      expect(randomMockReplica).toHaveBeenCalledTimes(0);
      expect(nodeOfCount(await count)).toBe('replica1');

      // Upstream: the select is built on the next replica the chooser gives; here it runs there.
      expect(nodeOf(await db.select().from(users))).toBe('replica2');
      expect(randomMockReplica).toHaveBeenCalledTimes(2);
    });

    it('single read replica $count', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOfCount(await db.$count(users))).toBe('replica1');
      expect(nodeOfCount(await db.$count(users))).toBe('replica1');
    });

    it('single read replica $count + primary $count', async () => {
      const { primaryDb, read1 } = databases();
      const db = await replicated(primaryDb, [read1]);

      expect(nodeOfCount(await db.$count(users))).toBe('replica1');
      expect(nodeOfCount(await db.$primary.$count(users))).toBe('primary');
    });

    it('always first read $count', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2], (replicas) => {
        return replicas[0] as Db;
      });

      expect(nodeOfCount(await db.$count(users))).toBe('replica1');
      expect(nodeOfCount(await db.$count(users))).toBe('replica1');
    });
  });

  // Not in upstream's file: the rest of drizzle's withReplicas surface a drop-in must keep.
  describe('[lagless] the rest of the drop-in surface', () => {
    it('$replicas are the replica databases as passed, and run on their own servers', async () => {
      const { primaryDb, read1, read2 } = databases();
      const db = await replicated(primaryDb, [read1, read2]);

      expect(db.$replicas).toEqual([read1, read2]);
      expect(db.$replicas[0]).toBe(read1);
      expect(nodeOf(await (db.$replicas[0] as Db).select().from(users))).toBe('replica1');
      expect(nodeOf(await (db.$replicas[1] as Db).select().from(users))).toBe('replica2');
    });

    it('an empty replica list is accepted: reads go to the primary (drizzle-orm`s own cannot read then)', async () => {
      const { primaryDb } = databases();
      const db = await replicated(primaryDb, []);

      expect(nodeOf(await db.select().from(users))).toBe('primary');
      expect(nodeOf(await db.query.usersTable.findMany())).toBe('primary');
      expect(nodeOfCount(await db.$count(users))).toBe('primary');
    });
  });
});
