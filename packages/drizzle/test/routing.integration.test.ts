// withReplicas() on a real primary with two streaming replicas, for both drivers. The node that ran
// a statement is always named by the server (inet_server_port()), never by our own counters.
import { isLaglessError } from '@lagless/core';
import type { Cluster } from '@lagless/testkit';
import { eq, inArray, is, sql } from 'drizzle-orm';
import { PgDatabase } from 'drizzle-orm/pg-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type GetReplica, type LaglessDatabase, type WithReplicasOptions, withReplicas } from '../src/index.js';
import { type Connected, type Db, drivers, startSchemaCluster } from './drivers.js';
import { itemCount, items, probe } from './schema.js';

const port = sql<number>`inet_server_port()`.mapWith(Number);

describe.each(drivers)('withReplicas over $name', (driver) => {
  let cluster: Cluster;
  let primaryPort: number;
  let replicaPorts: Set<number>;
  const open: Connected[] = [];
  const routed: LaglessDatabase<Db>[] = [];

  beforeAll(async () => {
    cluster = await startSchemaCluster();
    primaryPort = cluster.primary.port;
    replicaPorts = new Set(cluster.replicas.map((replica) => replica.port));
  });

  afterEach(async () => {
    for (const db of routed.splice(0)) await db.$lagless.close();
    for (const connection of open.splice(0)) await connection.end();
    for (const replica of cluster.replicas) await replica.resumeReplay();
  });

  afterAll(() => cluster?.stop());

  function connect(url: string): Db {
    const connection = driver.connect(url);
    open.push(connection);
    return connection.db;
  }

  function makeDb(options?: GetReplica<Db> | WithReplicasOptions<Db>) {
    const primary = connect(cluster.primary.url);
    const replicas = cluster.replicas.map((replica) => connect(replica.url));
    // Round-robin: sequential reads must reach both replicas, which least-connections does not promise
    // when one replica answers clearly faster.
    const db = withReplicas(primary, replicas, options ?? { probeIntervalMs: 100, balancer: 'round-robin' });
    routed.push(db);
    return { db, primary, replicas };
  }

  /** Runs `read` concurrently and returns the ports that served it. */
  async function portsOf(read: () => Promise<number>, times = 24): Promise<Set<number>> {
    return new Set(await Promise.all(Array.from({ length: times }, read)));
  }

  describe('reads go to replicas', () => {
    it('select, selectDistinct and selectDistinctOn', async () => {
      const { db } = makeDb();
      const select = await portsOf(async () => (await db.select({ port }).from(probe))[0]?.port ?? -1);
      const distinct = await portsOf(async () => (await db.selectDistinct({ port }).from(probe))[0]?.port ?? -1);
      const distinctOn = await portsOf(
        async () => (await db.selectDistinctOn([probe.id], { port }).from(probe))[0]?.port ?? -1,
      );
      // Both replicas served, the primary none: spread by the balancer, not pinned.
      expect(select).toEqual(replicaPorts);
      expect(distinct).toEqual(replicaPorts);
      expect(distinctOn).toEqual(replicaPorts);
    });

    it('$count', async () => {
      const { db } = makeDb();
      // The filter holds only off the primary: a count of 1 means a replica counted.
      const counts = await Promise.all(
        Array.from({ length: 12 }, () => db.$count(probe, sql`inet_server_port() <> ${primaryPort}`)),
      );
      expect(counts).toEqual(Array(12).fill(1));
    });

    it('relational query.*', async () => {
      const { db } = makeDb();
      const many = await portsOf(
        async () => (await db.query.probe.findMany({ extras: { port: port.as('port') } }))[0]?.port ?? -1,
      );
      const first = await portsOf(
        async () => (await db.query.probe.findFirst({ extras: { port: port.as('port') } }))?.port ?? -1,
      );
      expect(many).toEqual(replicaPorts);
      expect(first).toEqual(replicaPorts);
    });

    it('with(...) whose CTEs only read', async () => {
      const { db } = makeDb();
      const reader = db.$with('reader').as(db.select({ port: port.as('port') }).from(probe));
      const ports = await portsOf(async () => (await db.with(reader).select().from(reader))[0]?.port ?? -1);
      expect(ports).toEqual(replicaPorts);
    });

    it('prepared statements, executed again on the node chosen each time', async () => {
      const { db } = makeDb();
      const prepared = db
        .select({ port })
        .from(probe)
        .where(eq(probe.id, sql.placeholder('id')))
        .prepare('lagless_prepared');
      const ports = await portsOf(async () => (await prepared.execute({ id: 1 }))[0]?.port ?? -1);
      expect(ports).toEqual(replicaPorts);
    });

    it('subqueries and $dynamic() builders, mutated after they were built', async () => {
      const { db } = makeDb();
      const inner = db
        .select({ port: port.as('port') })
        .from(probe)
        .as('inner');
      const fromSubquery = await portsOf(async () => (await db.select().from(inner))[0]?.port ?? -1);
      expect(fromSubquery).toEqual(replicaPorts);
      // drizzle's builders mutate in place: a where() added after building must be part of what runs.
      const filtered = db.select({ port }).from(probe).$dynamic();
      filtered.where(eq(probe.id, -1));
      expect(await filtered).toEqual([]);
      const dynamic = await portsOf(async () => {
        const query = db.select({ port }).from(probe).$dynamic();
        query.where(eq(probe.id, 1));
        return (await query)[0]?.port ?? -1;
      });
      expect(dynamic).toEqual(replicaPorts);
    });

    it('a left join with no match maps the joined table to null on the replica, as drizzle does', async () => {
      const { db } = makeDb();
      // drizzle's select builder sets joinsNotNullableMap on the prepared query it gets back; unless
      // it reaches the node's own prepared query, `items` comes back as { id: null, note: null }.
      const query = () => db.select({ probe, items, port }).from(probe).leftJoin(items, eq(items.id, -1));
      const rows = await Promise.all(Array.from({ length: 8 }, query));
      const prepared = query().prepare('lagless_left_join');
      rows.push(await prepared.execute());
      for (const [row] of rows) {
        expect(row).toEqual({ probe: { id: 1 }, items: null, port: expect.any(Number) });
        expect(replicaPorts.has(row?.port ?? -1)).toBe(true);
      }
    });

    it('is still a drizzle PgDatabase of the primary', async () => {
      const { db, primary } = makeDb();
      expect(is(db, PgDatabase)).toBe(true);
      expect(db).toBeInstanceOf(primary.constructor);
      const client = (database: unknown) => (database as { $client: unknown }).$client;
      expect(client(db)).toBe(client(primary));
      expect(db.$primary).toBe(primary);
    });

    it("drizzle's getReplica function as the third argument chooses the replica", async () => {
      const chosen = cluster.replicas[1]?.url;
      let target: Db | undefined;
      const { db } = makeDb((candidates) => {
        const pick = candidates.find((candidate) => candidate === target) ?? candidates[0];
        if (!pick) throw new Error('no candidates');
        return pick;
      });
      target = db.$replicas[1];
      expect(chosen).toBeDefined();
      const ports = await portsOf(async () => (await db.select({ port }).from(probe))[0]?.port ?? -1);
      expect(ports).toEqual(new Set([cluster.replicas[1]?.port]));
    });
  });

  describe('writes go to the primary', () => {
    it('insert, update and delete', async () => {
      const { db } = makeDb();
      const [inserted] = await db.insert(items).values({ note: 'w' }).returning({ id: items.id, port });
      expect(inserted?.port).toBe(primaryPort);
      const id = inserted?.id ?? -1;
      const [updated] = await db.update(items).set({ note: 'w2' }).where(eq(items.id, id)).returning({ port });
      expect(updated?.port).toBe(primaryPort);
      const [deleted] = await db.delete(items).where(eq(items.id, id)).returning({ port });
      expect(deleted?.port).toBe(primaryPort);
    });

    it('execute', async () => {
      const { db } = makeDb();
      const results = await Promise.all(
        Array.from({ length: 8 }, () => db.execute(sql`select inet_server_port() as port`)),
      );
      expect(results.map((result) => Number(driver.rows(result)[0]?.port))).toEqual(Array(8).fill(primaryPort));
    });

    it('transaction, reads inside it included', async () => {
      const { db } = makeDb();
      const ports = await db.transaction(async (tx) => {
        const [row] = await tx.insert(items).values({ note: 'tx' }).returning({ port });
        const [read] = await tx.select({ port }).from(probe);
        return [row?.port, read?.port];
      });
      expect(ports).toEqual([primaryPort, primaryPort]);
    });

    it("transaction() hands the primary's transaction() its arguments exactly as received", async () => {
      const { db, primary } = makeDb();
      const received: unknown[][] = [];
      const original = primary.transaction.bind(primary);
      primary.transaction = ((...args: Parameters<typeof original>) => {
        received.push(args);
        return original(...args);
      }) as typeof original;
      await db.transaction(async () => {});
      await db.transaction(async () => {}, { isolationLevel: 'serializable' });
      expect(received.map((args) => args.length)).toEqual([1, 2]);
      expect(received[1]?.[1]).toEqual({ isolationLevel: 'serializable' });
    });

    it('reads through the routed db inside a transaction callback go to the primary, not a replica', async () => {
      const { db } = makeDb();
      const inside = await db.transaction(async () =>
        portsOf(async () => (await db.select({ port }).from(probe))[0]?.port ?? -1, 8),
      );
      expect(inside).toEqual(new Set([primaryPort]));
      // Only inside: the same read after the transaction is a replica's again.
      const after = await portsOf(async () => (await db.select({ port }).from(probe))[0]?.port ?? -1);
      expect(after).toEqual(replicaPorts);
    });

    it('refreshMaterializedView', async () => {
      const { db, primary } = makeDb();
      await db.insert(items).values({ note: 'for the view' });
      const [live] = await primary.select({ n: sql<number>`count(*)::int` }).from(items);
      // A standby refuses REFRESH outright, so success already names the primary; the view's new
      // content on the primary confirms it.
      await db.refreshMaterializedView(itemCount);
      const [view] = await primary.select().from(itemCount);
      expect(view?.n).toBe(live?.n);
    });

    it('with(...) holding a data-modifying CTE', async () => {
      const { db, primary } = makeDb();
      const insert = db.$with('ins').as(
        db
          .insert(items)
          .values({ note: 'from a cte' })
          .returning({ id: items.id, port: port.as('port') }),
      );
      const results = await Promise.all(Array.from({ length: 6 }, () => db.with(insert).select().from(insert)));
      expect(results.map((rows) => rows[0]?.port)).toEqual(Array(6).fill(primaryPort));
      const ids = results.map((rows) => rows[0]?.id ?? -1);
      const stored = await primary.select({ id: items.id }).from(items).where(inArray(items.id, ids));
      expect(stored).toHaveLength(6);
    });

    it('with(...) of a reading CTE, then insert: the insert still goes to the primary', async () => {
      const { db } = makeDb();
      const reader = db.$with('reader').as(db.select({ n: sql<number>`1`.as('n') }).from(probe));
      const [row] = await db.with(reader).insert(items).values({ note: 'after cte' }).returning({ port });
      expect(row?.port).toBe(primaryPort);
    });
  });

  describe('errors', () => {
    it('a query error on a replica reaches the caller unchanged and is not retried', async () => {
      const { db } = makeDb();
      await db.$lagless.ready();
      const failing = db.select({ port }).from(probe).where(sql`1 / 0 = 1`);
      await expect(failing).rejects.toMatchObject({ cause: { code: '22012' } });
      const stats = db.$lagless.stats();
      expect(stats.reads.retries).toBe(0);
      expect(stats.replicas.every((replica) => replica.state === 'up')).toBe(true);
    });
  });

  describe('options', () => {
    it('rejects bad input with INVALID_OPTION naming the option and the value', async () => {
      const primary = connect(cluster.primary.url);
      const replica = connect(cluster.replicas[0]?.url ?? '');
      const attempts: Array<[() => unknown, RegExp]> = [
        [
          () => withReplicas({} as Db, [replica]),
          /^Invalid option primary: expected a drizzle pg database, received \{\}/,
        ],
        [() => withReplicas(primary, 'x' as never), /^Invalid option replicas: expected an array/],
        [
          () => withReplicas(primary, [replica, {} as Db]),
          /^Invalid option replicas\[1\]: expected a drizzle pg database/,
        ],
        [
          () => withReplicas(primary, [primary]),
          /^Invalid option replicas\[0\]: expected a database other than the primary/,
        ],
        [() => withReplicas(primary, [replica], 42 as never), /^Invalid option options: expected .* received 42/],
        [
          () => withReplicas(primary, [replica], { waitTimeoutMs: -1 } as WithReplicasOptions<Db>),
          /^Invalid option waitTimeoutMs: expected .* received -1/,
        ],
        [
          () => withReplicas(primary, [replica], { balancer: 'random', getReplica: (r) => r[0] as Db }),
          /^Invalid option balancer: expected no balancer when getReplica is given/,
        ],
        [
          () => withReplicas(primary, [replica], { replicaNames: ['a', 'b'] }),
          /^Invalid option replicaNames: expected 1 non-empty strings/,
        ],
        [
          () => withReplicas(primary, [replica], { primary } as never),
          /^Invalid option primary: expected no such option \(it is withReplicas\(\)' first argument\)/,
        ],
      ];
      for (const [attempt, message] of attempts) {
        let caught: unknown;
        try {
          attempt();
        } catch (error) {
          caught = error;
        }
        expect(isLaglessError(caught, 'INVALID_OPTION'), String(message)).toBe(true);
        expect((caught as Error).message).toMatch(message);
      }
    });

    it('a getReplica that returns something else fails the read with INVALID_OPTION', async () => {
      const { db } = makeDb({ getReplica: () => ({}) as Db });
      await expect(db.select({ port }).from(probe)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    });

    it('$lagless is disposable: `await using` closes its router', async () => {
      const { db } = makeDb();
      {
        await using lagless = db.$lagless;
        await lagless.ready();
      }
      await expect(db.select({ port }).from(probe)).rejects.toMatchObject({ code: 'CLOSED' });
    });

    it('an empty replica list reads from the primary', async () => {
      const primary = connect(cluster.primary.url);
      const db = withReplicas(primary, []);
      routed.push(db);
      const [row] = await db.select({ port }).from(probe);
      expect(row?.port).toBe(primaryPort);
    });
  });
});
