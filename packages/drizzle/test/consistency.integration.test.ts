// Read-your-writes and failover through withReplicas(), for both drivers, on a real cluster. A read's
// server is named by inet_server_port(); a paused replica's stale answer names it too.
import type { Cluster } from '@lagless/testkit';
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type LaglessDatabase, type WithReplicasOptions, withReplicas } from '../src/index.js';
import { type Connected, type Db, drivers, startSchemaCluster } from './drivers.js';
import { items, probe } from './schema.js';

const port = sql<number>`inet_server_port()`.mapWith(Number);
const SOAK = process.env.LAGLESS_SOAK === '1';

/** Runs `count` calls of `task` on `workers` concurrent loops. */
async function inParallel<T>(count: number, workers: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < count) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

describe.each(drivers)('consistency and failover over $name', (driver) => {
  let cluster: Cluster;
  const open: Connected[] = [];
  const routed: LaglessDatabase<Db>[] = [];

  beforeAll(async () => {
    cluster = await startSchemaCluster();
  });

  afterEach(async () => {
    for (const db of routed.splice(0)) await db.$lagless.close();
    for (const connection of open.splice(0)) await connection.end();
    for (const replica of cluster.replicas) {
      if (replica.state === 'stopped') await replica.start();
      await replica.resumeReplay();
    }
  });

  afterAll(() => cluster?.stop());

  function makeDb(options: WithReplicasOptions<Db> = {}): LaglessDatabase<Db> {
    const connect = (url: string) => {
      const connection = driver.connect(url);
      open.push(connection);
      return connection.db;
    };
    const db = withReplicas(
      connect(cluster.primary.url),
      cluster.replicas.map((replica) => connect(replica.url)),
      { probeIntervalMs: 100, readmission: { initialMs: 100, maxMs: 1000, jitter: 0 }, ...options },
    );
    routed.push(db);
    return db;
  }

  /** Inserts a row, then reads it back: the note it saw (null if the read was stale) and who served it. */
  async function insertThenRead(db: LaglessDatabase<Db>, note: string) {
    const [row] = await db.insert(items).values({ note }).returning({ id: items.id });
    const [read] = await db
      .select({ port, note: items.note })
      .from(probe)
      .leftJoin(items, eq(items.id, row?.id ?? -1));
    return { port: read?.port, note: read?.note ?? null };
  }

  it('with one replica paused, 1 000 session insert→select pairs all see their row', async () => {
    const db = makeDb();
    await db.$lagless.ready();
    const [paused, live] = cluster.replicas;
    await paused?.pauseReplay();
    const reads = await inParallel(1000, 16, (i) => db.$lagless.session(() => insertThenRead(db, `session ${i}`)));
    const missed = reads.filter((read, i) => read.note !== `session ${i}`);
    expect(missed).toEqual([]);
    // Not by sending everything to the primary: the live replica served session reads.
    expect(reads.filter((read) => read.port === live?.port).length).toBeGreaterThan(0);
    expect(reads.filter((read) => read.port === paused?.port)).toEqual([]);
  });

  it("with consistency: 'none' the same pairs observe stale reads, served by replicas", async () => {
    // Round-robin, so reads reach the paused replica whatever the replicas' latencies.
    const db = makeDb({ balancer: 'round-robin', consistency: 'none' });
    await db.$lagless.ready();
    const [paused] = cluster.replicas;
    await paused?.pauseReplay();
    const reads = await inParallel(200, 16, (i) => insertThenRead(db, `eventual ${i}`));
    const stale = reads.filter((read) => read.note === null);
    // Proves the session test above could fail: without a scope, nothing waits for the write.
    expect(stale.length).toBeGreaterThan(0);
    // The paused replica answered stale; the live one may too, for a read that beat its replay.
    expect(stale.some((read) => read.port === paused?.port)).toBe(true);
    expect(stale.some((read) => read.port === cluster.primary.port)).toBe(false);
  });

  it("by default every read outside a session sees the process's earlier writes, no session needed", async () => {
    const db = makeDb();
    await db.$lagless.ready();
    await cluster.replicas[0]?.pauseReplay();
    const reads = await inParallel(200, 16, (i) => insertThenRead(db, `global ${i}`));
    expect(reads.filter((read, i) => read.note !== `global ${i}`)).toEqual([]);
  });

  it('a session read after a transaction sees what it committed', async () => {
    const db = makeDb();
    await db.$lagless.ready();
    await cluster.replicas[0]?.pauseReplay();
    const reads = await inParallel(100, 8, (i) =>
      db.$lagless.session(async () => {
        const id = await db.transaction(async (tx) => {
          const [row] = await tx
            .insert(items)
            .values({ note: `tx ${i}` })
            .returning({ id: items.id });
          return row?.id ?? -1;
        });
        const [read] = await db.select({ note: items.note }).from(items).where(eq(items.id, id));
        return read?.note;
      }),
    );
    expect(reads).toEqual(Array.from({ length: 100 }, (_, i) => `tx ${i}`));
  });

  it("a token carries a session's writes to the next request's session", async () => {
    const db = makeDb();
    await db.$lagless.ready();
    const [paused] = cluster.replicas;
    await paused?.pauseReplay();
    const results = await inParallel(100, 8, async (i) => {
      const { id, token } = await db.$lagless.session(async () => {
        const [row] = await db
          .insert(items)
          .values({ note: `token ${i}` })
          .returning({ id: items.id });
        return { id: row?.id ?? -1, token: await db.$lagless.token() };
      });
      // A new request: a fresh scope that only knows the token.
      const withToken = await db.$lagless.session({ token }, async () => {
        const [read] = await db.select({ note: items.note }).from(items).where(eq(items.id, id));
        return read?.note;
      });
      return { token, withToken };
    });
    expect(results.every((result) => typeof result.token === 'string' && result.token.length > 0)).toBe(true);
    expect(results.map((result) => result.withToken)).toEqual(Array.from({ length: 100 }, (_, i) => `token ${i}`));
  });

  it(`killing a replica during ${SOAK ? 30 : 8} s of concurrent reads fails no read`, async () => {
    const db = makeDb();
    await db.$lagless.ready();
    const [victim, survivor] = cluster.replicas;
    const durationMs = SOAK ? 30_000 : 8_000;
    const deadline = Date.now() + durationMs;
    const killAt = Date.now() + durationMs / 4;
    let killed = false;
    const before = new Map<number, number>();
    const after = new Map<number, number>();
    const failures: unknown[] = [];
    let reads = 0;
    const killer = (async () => {
      await new Promise((resolve) => setTimeout(resolve, killAt - Date.now()));
      await victim?.kill();
      killed = true;
    })();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (Date.now() < deadline) {
          const phase = killed ? after : before;
          try {
            const [row] = await db.select({ port }).from(probe);
            const served = row?.port ?? -1;
            phase.set(served, (phase.get(served) ?? 0) + 1);
            reads++;
          } catch (error) {
            failures.push(error);
          }
        }
      }),
    );
    await killer;
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(1000);
    // The victim took its share before the kill; after it, the survivor carried the load.
    expect(before.get(victim?.port ?? -1) ?? 0).toBeGreaterThan(0);
    expect(after.get(victim?.port ?? -1) ?? 0).toBe(0);
    expect(after.get(survivor?.port ?? -1) ?? 0).toBeGreaterThan(0);
    expect(db.$lagless.stats().replicas.find((replica) => replica.name === 'replica-0')?.state).not.toBe('up');
  }, 120_000);
});
