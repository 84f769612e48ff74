// The router against a real primary with two streaming replicas. The node that served a read is
// always identified by the server (inet_server_port()), never by the router's own counters.
import { type Cluster, startCluster } from '@lagless/testkit';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, isLaglessError, type Router, type RouterOptions } from '../src/index.js';
import { clusterNodes, endNodes, type PoolNode, poolNode } from './cluster-nodes.js';

let cluster: Cluster;
let primaryPort: number;
const routers: Router<pg.Pool>[] = [];
const nodeSets: PoolNode[][] = [];

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  primaryPort = cluster.primary.port;
  await cluster.primary.query('CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)');
  await cluster.waitForReplicas();
});

afterEach(async () => {
  for (const router of routers.splice(0)) await router.close();
  for (const nodes of nodeSets.splice(0)) await endNodes(...nodes);
  for (const replica of cluster.replicas) {
    if (replica.state === 'frozen') await replica.thaw();
    if (replica.state === 'stopped') await replica.start();
    await replica.resumeReplay();
  }
});

afterAll(() => cluster?.stop());

function makeRouter(options: Partial<RouterOptions<pg.Pool>> = {}, poolOptions: pg.PoolConfig = {}) {
  const { primary, replicas } = clusterNodes(cluster, poolOptions);
  nodeSets.push([primary, ...replicas]);
  const router = createRouter<pg.Pool>({
    primary,
    replicas,
    probeIntervalMs: 100,
    readmission: { initialMs: 100, maxMs: 1000, jitter: 0 },
    ...options,
  });
  routers.push(router);
  return { router, primary, replicas };
}

/** A read that returns the port of the server that ran it, and whether it saw row `id`. */
async function readRow(router: Router<pg.Pool>, id?: number): Promise<{ port: number; note: string | undefined }> {
  return router.read(async (pool) => {
    const { rows } = await pool.query<{ port: number; note: string | null }>(
      'SELECT inet_server_port() AS port, (SELECT note FROM items WHERE id = $1) AS note',
      [id ?? -1],
    );
    return { port: Number(rows[0]?.port), note: rows[0]?.note ?? undefined };
  });
}

async function insertRow(router: Router<pg.Pool>, note: string): Promise<number> {
  return router.write(async (pool) => {
    const { rows } = await pool.query<{ id: number }>('INSERT INTO items (note) VALUES ($1) RETURNING id', [note]);
    return Number(rows[0]?.id);
  });
}

const replicaPorts = () => new Set(cluster.replicas.map((r) => r.port));

describe('routing', () => {
  it('sends reads to the replicas, spread by least-connections, and writes to the primary', async () => {
    const { router } = makeRouter();
    await router.ready();
    const ports = await Promise.all(Array.from({ length: 40 }, () => readRow(router).then((r) => r.port)));
    const counts = new Map<number, number>();
    for (const port of ports) counts.set(port, (counts.get(port) ?? 0) + 1);
    expect(new Set(counts.keys())).toEqual(replicaPorts());
    const writtenOn = await router.write(async (pool) => {
      const { rows } = await pool.query<{ port: number; recovery: boolean }>(
        'SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery',
      );
      return rows[0];
    });
    expect(writtenOn).toEqual({ port: primaryPort, recovery: false });
    expect(
      (
        await router.read(async (pool) => (await pool.query('SELECT inet_server_port() AS p')).rows[0], {
          primary: true,
        })
      ).p,
    ).toBe(primaryPort);
  });

  it('sends every read to the primary when there are no replicas', async () => {
    const primary = poolNode('primary', cluster.primary.url);
    nodeSets.push([primary]);
    const router = createRouter<pg.Pool>({ primary, replicas: [] });
    routers.push(router);
    const events: string[] = [];
    router.on('no-replicas', () => events.push('no-replicas'));
    await router.ready();
    const ports = await Promise.all(Array.from({ length: 5 }, () => readRow(router).then((r) => r.port)));
    expect(new Set(ports)).toEqual(new Set([primaryPort]));
    expect(router.stats().reads.fallbacks).toBe(0);
  });

  it('surfaces a query error unchanged and does not retry it', async () => {
    const { router } = makeRouter();
    let calls = 0;
    const error = await router
      .read(async (pool) => {
        calls++;
        return pool.query('SELECT * FROM no_such_table');
      })
      .catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('42P01');
    expect(calls).toBe(1);
    expect(router.stats().replicas.every((r) => r.state === 'up')).toBe(true);
  });
});

describe('lag monitor', () => {
  it('reports growing lag for a paused replica and ~0 after resume', async () => {
    const { router } = makeRouter();
    await router.ready();
    const paused = cluster.replicas[0];
    if (!paused) throw new Error('replica expected');
    await paused.pauseReplay();
    const lagOf = () => router.stats().replicas.find((r) => r.name === paused.name);
    await insertRow(router, 'lag 1');
    await waitUntil(() => (lagOf()?.lagBytes ?? 0) > 0);
    const first = lagOf();
    await new Promise((r) => setTimeout(r, 400));
    await insertRow(router, 'lag 2');
    await waitUntil(() => (lagOf()?.lagBytes ?? 0) > (first?.lagBytes ?? 0));
    const second = lagOf();
    expect(second?.lagMs ?? 0).toBeGreaterThan(first?.lagMs ?? 0);
    // 400 ms passed between the two writes; the monitor samples every 100 ms, so at least ~300 ms show.
    expect(second?.lagMs ?? 0).toBeGreaterThanOrEqual(200);
    // The live replica was never held back: far behind the paused one at the same moment.
    const other = router.stats().replicas.find((r) => r.name !== paused.name);
    expect(other?.lagBytes ?? Number.POSITIVE_INFINITY).toBeLessThan(second?.lagBytes ?? 0);
    await paused.resumeReplay();
    await waitUntil(() => router.stats().replicas.every((r) => r.lagBytes === 0 && r.lagMs === 0));
  });

  it('keeps a replica lagging beyond maxLagMs out of rotation', async () => {
    const { router } = makeRouter({ maxLagMs: 200 });
    await router.ready();
    const paused = cluster.replicas[0];
    if (!paused) throw new Error('replica expected');
    await paused.pauseReplay();
    await insertRow(router, 'stale maker');
    await waitUntil(() => (router.stats().replicas.find((r) => r.name === paused.name)?.lagMs ?? 0) > 200);
    const ports = await Promise.all(Array.from({ length: 20 }, () => readRow(router).then((r) => r.port)));
    expect(new Set(ports)).toEqual(new Set([cluster.replicas[1]?.port]));
  });
});

describe('read-your-writes', () => {
  it('returns the written row in 1000 of 1000 session write→read pairs while one replica is paused', async () => {
    const { router } = makeRouter();
    await router.ready();
    await cluster.replicas[0]?.pauseReplay();
    let seen = 0;
    const servedBy = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      await router.session(async () => {
        const id = await insertRow(router, `rw ${i}`);
        const { port, note } = await readRow(router, id);
        if (note === `rw ${i}`) seen++;
        servedBy.set(port, (servedBy.get(port) ?? 0) + 1);
      });
    }
    expect(seen).toBe(1000);
    // The paused replica never served these reads; the live one served most of them.
    expect(servedBy.get(cluster.replicas[0]?.port ?? 0) ?? 0).toBe(0);
    expect(servedBy.get(cluster.replicas[1]?.port ?? 0) ?? 0).toBeGreaterThan(500);
  });

  it("observes stale reads for the same pairs with consistency: 'none' (the test can fail)", async () => {
    const { router } = makeRouter({ balancer: 'round-robin', consistency: 'none' });
    await router.ready();
    await cluster.replicas[0]?.pauseReplay();
    let stale = 0;
    for (let i = 0; i < 50; i++) {
      const id = await insertRow(router, `eventual ${i}`);
      if ((await readRow(router, id)).note === undefined) stale++;
    }
    expect(stale).toBeGreaterThan(0);
  });

  it('waits, then falls back to the primary when both replicas are paused', async () => {
    const { router } = makeRouter({ waitTimeoutMs: 150 });
    await router.ready();
    for (const replica of cluster.replicas) await replica.pauseReplay();
    const waits: string[] = [];
    router.on('wait', (e) => waits.push(e.outcome));
    await router.session(async () => {
      const id = await insertRow(router, 'both paused');
      const read = await readRow(router, id);
      expect(read).toEqual({ port: primaryPort, note: 'both paused' });
    });
    expect(waits).toEqual(['timeout']);
    expect(router.stats().reads.fallbacks).toBe(1);
  });

  it("raises LSN_WAIT_TIMEOUT under onTimeout: 'error'", async () => {
    const { router } = makeRouter({ waitTimeoutMs: 100, onTimeout: 'error' });
    await router.ready();
    for (const replica of cluster.replicas) await replica.pauseReplay();
    await router.session(async () => {
      await insertRow(router, 'timeout');
      const error = await readRow(router).catch((e: unknown) => e);
      expect(isLaglessError(error, 'LSN_WAIT_TIMEOUT')).toBe(true);
    });
  });

  it('under global consistency every read in the process sees its writes', async () => {
    const { router } = makeRouter({ consistency: 'global' });
    await router.ready();
    await cluster.replicas[0]?.pauseReplay();
    for (let i = 0; i < 50; i++) {
      const id = await insertRow(router, `global ${i}`);
      expect((await readRow(router, id)).note).toBe(`global ${i}`);
    }
  });

  it('shares one primary probe among concurrent writers', async () => {
    const { router } = makeRouter({ probeIntervalMs: 0 });
    await router.ready();
    const before = router.stats().walProbes;
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        router.session(async () => {
          const id = await insertRow(router, `concurrent ${i}`);
          expect((await readRow(router, id)).note).toBe(`concurrent ${i}`);
        }),
      ),
    );
    const probes = router.stats().walProbes - before;
    expect(router.stats().writes).toBe(50);
    expect(probes).toBeGreaterThan(0);
    // Far fewer than one per write (the exact count depends on how the writes' ends spread in time).
    expect(probes).toBeLessThan(25);
  });

  it('carries a session to another router through a token, and ignores a forged one', async () => {
    const a = makeRouter({ tokenSecret: 'a-secret-of-16-bytes-or-more' }).router;
    const b = makeRouter({ tokenSecret: 'a-secret-of-16-bytes-or-more' }).router;
    await cluster.replicas[0]?.pauseReplay();
    const { id, token } = await a.session(async () => {
      const id = await insertRow(a, 'via token');
      return { id, token: await a.token() };
    });
    expect(token).toMatch(/^l1\./);
    for (let i = 0; i < 20; i++) {
      const read = await b.session({ token }, () => readRow(b, id));
      expect(read.note).toBe('via token');
    }
    const forged = `${token?.slice(0, -2)}xx`;
    const rejected: string[] = [];
    b.on('token-rejected', (event) => rejected.push(event.reason));
    const reasons: string[] = [];
    // As if it were absent: the read is served, by whichever replica, and the request goes on.
    const read = await b.session({ token: forged, onTokenRejected: (reason) => reasons.push(reason) }, () =>
      readRow(b, id),
    );
    expect(cluster.replicas.map((r) => r.port)).toContain(read.port);
    expect(rejected).toEqual(['bad-signature']);
    expect(reasons).toEqual(['bad-signature']);
    expect(b.stats().tokens).toMatchObject({ rejected: 1 });
    await expect(b.decodeToken(forged)).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
  });
});

describe('health', () => {
  it('ejects a killed replica on the first failed read, fails no read, readmits it after restart, and never serves a session stale data after readmission', async () => {
    const { router } = makeRouter({ replicaTimeoutMs: 2000 });
    await router.ready();
    const victim = cluster.replicas[1];
    if (!victim) throw new Error('replica expected');
    const down: string[] = [];
    router.on('replica-down', (e) => down.push(e.replica));
    await victim.kill();
    const ports = [];
    for (let i = 0; i < 30; i++) ports.push((await readRow(router)).port);
    expect(down).toEqual([victim.name]);
    expect(ports).not.toContain(victim.port);
    expect(router.stats().replicas.find((r) => r.name === victim.name)?.state).not.toBe('up');

    // Written while it is down: after its restart it must catch up before serving these.
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await insertRow(router, `during outage ${i}`));
    await cluster.replicas[0]?.pauseReplay();
    await victim.start();
    await waitUntil(() => router.stats().replicas.find((r) => r.name === victim.name)?.state === 'up', 10_000);
    for (const [i, id] of ids.entries()) {
      await router.session(async () => {
        const fresh = await insertRow(router, `after readmission ${i}`);
        const read = await readRow(router, fresh);
        expect(read.note).toBe(`after readmission ${i}`);
        expect((await readRow(router, id)).note).toBe(`during outage ${i}`);
      });
    }
  });

  it('a frozen replica costs at most the replica timeout: reads finish on the other node', async () => {
    const { router } = makeRouter({ replicaTimeoutMs: 300, probeTimeoutMs: 300, balancer: 'round-robin' });
    await router.ready();
    const frozen = cluster.replicas[0];
    if (!frozen) throw new Error('replica expected');
    await frozen.freeze();
    const started = performance.now();
    const ports = [];
    for (let i = 0; i < 6; i++) ports.push((await readRow(router)).port);
    const elapsed = performance.now() - started;
    expect(ports).not.toContain(frozen.port);
    expect(router.stats().reads.retries).toBeLessThanOrEqual(1);
    // One timeout at most, however many reads: generous slack for a shared machine.
    expect(elapsed).toBeLessThan(300 + 5000);
    await frozen.thaw();
  });
});

describe('membership', () => {
  it('removes a replica under load without failing a read, and an added replica enters rotation', async () => {
    const { router, replicas } = makeRouter({ balancer: 'round-robin' });
    await router.ready();
    const [first, second] = replicas;
    if (!first || !second) throw new Error('replicas expected');
    let failures = 0;
    let stop = false;
    let epoch = 0;
    const seen = new Set<number>();
    const load = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (!stop) {
          try {
            // Judged by when the read started: one picked before removal may still finish after it.
            const started = epoch;
            const { port } = await readRow(router);
            if (started === epoch) seen.add(port);
          } catch {
            failures++;
          }
        }
      }),
    );
    let afterRemoval: Set<number>;
    try {
      await new Promise((r) => setTimeout(r, 200));
      await router.removeReplica(first.name);
      epoch++;
      seen.clear();
      await new Promise((r) => setTimeout(r, 300));
      afterRemoval = new Set(seen);
      const again = poolNode('replica1-again', cluster.replicas[0]?.url ?? '');
      nodeSets.push([again]);
      await router.addReplica(again);
      epoch++;
      seen.clear();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      stop = true;
      await load;
    }
    expect(afterRemoval).toEqual(new Set([second.port]));
    expect(failures).toBe(0);
    expect(seen).toContain(first.port);
    expect(
      router
        .stats()
        .replicas.map((r) => r.name)
        .sort(),
    ).toEqual(['replica1-again', 'replica2']);
  });
});

describe('startup checks', () => {
  it('refuses a primary given as a replica, and a replica of another cluster, with passwords redacted', async () => {
    const other = await startCluster({ replicas: 1, password: 'other-secret-pw' });
    try {
      const primary = poolNode('primary', cluster.primary.url);
      const fake = poolNode('actually-primary', cluster.primary.url);
      const foreign = poolNode('foreign', other.replicas[0]?.url ?? '');
      const good = poolNode('good', cluster.replicas[0]?.url ?? '');
      nodeSets.push([primary, fake, foreign, good]);
      const router = createRouter<pg.Pool>({ primary, replicas: [fake, foreign, good] });
      routers.push(router);
      const misconfigured: string[] = [];
      router.on('replica-misconfigured', (e) => misconfigured.push(e.replica));
      const error = await router.ready().catch((e: unknown) => e);
      expect(isLaglessError(error, 'REPLICA_MISCONFIGURED')).toBe(true);
      expect((error as Error).message).toMatch(/actually-primary.*not in recovery/);
      expect((error as Error).message).toMatch(/foreign.*another cluster/);
      expect((error as Error).message).not.toContain('other-secret-pw');
      expect(misconfigured.sort()).toEqual(['actually-primary', 'foreign']);
      const ports = await Promise.all(Array.from({ length: 10 }, () => readRow(router).then((r) => r.port)));
      expect(new Set(ports)).toEqual(new Set([cluster.replicas[0]?.port]));
    } finally {
      await other.stop();
    }
  });
});

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
