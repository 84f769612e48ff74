// Two app instances (two routers, separate pools) sharing a real redis-server as their token store.
import { type Cluster, type RedisServer, startCluster, startRedis } from '@lagless/testkit';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, type Router } from '../src/index.js';
import { redisTokenStore } from '../src/redis.js';
import { clusterNodes, endNodes, type PoolNode } from './cluster-nodes.js';

let cluster: Cluster;
let redisServer: RedisServer;
const clients: Redis[] = [];
const routers: Router<pg.Pool>[] = [];
const nodes: PoolNode[] = [];

function instance(): Router<pg.Pool> {
  // Fail fast while Redis is down instead of queueing commands until it returns.
  const redis = new Redis(redisServer.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: false });
  redis.on('error', () => {});
  clients.push(redis);
  const { primary, replicas } = clusterNodes(cluster);
  nodes.push(primary, ...replicas);
  const router = createRouter<pg.Pool>({
    primary,
    replicas,
    probeIntervalMs: 100,
    // Round-robin, so unscoped reads do reach the paused replica (asserted below).
    balancer: 'round-robin',
    tokenStore: redisTokenStore(redis, { timeoutMs: 250 }),
  });
  routers.push(router);
  return router;
}

function toBig(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

async function readNote(router: Router<pg.Pool>, id: number) {
  return router.read(async (pool) => {
    const { rows } = await pool.query<{ port: number; note: string | null }>(
      'SELECT inet_server_port() AS port, (SELECT note FROM notes WHERE id = $1) AS note',
      [id],
    );
    return { port: Number(rows[0]?.port), note: rows[0]?.note ?? undefined };
  });
}

async function insertNote(router: Router<pg.Pool>, note: string): Promise<number> {
  return router.write(async (pool) => {
    const { rows } = await pool.query<{ id: number }>('INSERT INTO notes (note) VALUES ($1) RETURNING id', [note]);
    return Number(rows[0]?.id);
  });
}

beforeAll(async () => {
  [cluster, redisServer] = await Promise.all([startCluster({ replicas: 2 }), startRedis()]);
  await cluster.primary.query('CREATE TABLE notes (id serial PRIMARY KEY, note text NOT NULL)');
  await cluster.waitForReplicas();
});

afterAll(async () => {
  for (const router of routers) await router.close();
  await endNodes(...nodes);
  for (const client of clients) client.disconnect();
  await redisServer?.stop();
  await cluster?.stop();
});

describe('token store in Redis', () => {
  it("lets one instance read a user's writes made on another instance", async () => {
    const a = instance();
    const b = instance();
    await Promise.all([a.ready(), b.ready()]);
    // A shard's first use marks it in Redis, and requires the primary's position then: before the
    // pause, so that the paused replica has it.
    await b.session({ key: 'user-2' }, () => readNote(b, 1));
    await cluster.waitForReplicas();
    await cluster.replicas[0]?.pauseReplay();
    try {
      for (let i = 0; i < 50; i++) {
        const id = await a.session({ key: 'user-1' }, () => insertNote(a, `cross ${i}`));
        const read = await b.session({ key: 'user-1' }, () => readNote(b, id));
        expect(read.note).toBe(`cross ${i}`);
        expect(read.port).not.toBe(cluster.replicas[0]?.port);
      }
      // Another user's key carries no requirement: the paused replica may serve it (and be stale).
      const ports = new Set<number>();
      for (let i = 0; i < 20; i++) ports.add((await b.session({ key: 'user-2' }, () => readNote(b, 1))).port);
      expect(ports).toContain(cluster.replicas[0]?.port);
    } finally {
      await cluster.replicas[0]?.resumeReplay();
    }
  });

  it('keeps the highest LSN when several instances write for the same key at once', async () => {
    const writers = [instance(), instance(), instance()];
    await Promise.all(writers.map((r) => r.ready()));
    // Each write reports the WAL position reached inside its own transaction: a lower bound of its commit.
    const lowerBounds = await Promise.all(
      writers.flatMap((router, w) =>
        Array.from({ length: 10 }, (_, i) =>
          router.session({ key: 'user-3' }, () =>
            router.write(async (pool) => {
              const { rows } = await pool.query<{ lsn: string }>(
                'WITH ins AS (INSERT INTO notes (note) VALUES ($1) RETURNING id) SELECT pg_current_wal_insert_lsn()::text AS lsn FROM ins',
                [`m ${w}/${i}`],
              );
              return toBig(String(rows[0]?.lsn));
            }),
          ),
        ),
      ),
    );
    const found = await redisTokenStore(clients[0] as Redis).get('user-3', 60_000);
    const stored = typeof found === 'object' ? found.lsn : found;
    if (stored === undefined) throw new Error('nothing stored for user-3');
    const highest = lowerBounds.reduce((a, b) => (a > b ? a : b));
    expect(stored >= highest).toBe(true);
    expect(stored <= toBig(await cluster.primary.currentWalLsn())).toBe(true);
  });

  it('with Redis stopped, reads in keyed sessions go to the primary and nothing throws', async () => {
    const router = instance();
    await router.ready();
    const errors: string[] = [];
    const fallbacks: string[] = [];
    router.on('store-error', (e) => errors.push(e.operation));
    router.on('fallback', (e) => fallbacks.push(e.reason));
    await redisServer.stop();
    try {
      for (let i = 0; i < 10; i++) {
        const read = await router.session({ key: 'user-4' }, async () => {
          const id = await insertNote(router, `no redis ${i}`);
          return readNote(router, id);
        });
        expect(read).toEqual({ port: cluster.primary.port, note: `no redis ${i}` });
      }
      expect(errors).toContain('get');
      expect(errors).toContain('raise');
      expect(new Set(fallbacks)).toEqual(new Set(['store-unavailable']));
    } finally {
      await redisServer.start();
    }
  });
});
