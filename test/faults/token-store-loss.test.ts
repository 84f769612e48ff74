// The token store losing its data under load: Redis restarted empty (SIGKILL, no persistence) while
// instance A writes for users and instance B reads them back in keyed sessions, with one replica's
// replay paused so that any read it serves for a recently written user is visibly stale. Then a real
// Redis Cluster. Each with ioredis 5 and ioredis 6.
import { createRequire } from 'node:module';
import { parseLsn } from '@lagless/core';
import { type RedisLike, redisTokenStore } from '@lagless/core/redis';
import {
  type Cluster,
  type RedisCluster,
  type RedisServer,
  type ReplicaNode,
  startCluster,
  startRedis,
  startRedisCluster,
} from '@lagless/testkit';
import { Cluster as Cluster5, Redis as Redis5 } from 'ioredis';
import { Cluster as Cluster6, Redis as Redis6 } from 'ioredis6';
import { afterAll, afterEach, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  describeReport,
  emptyReport,
  type Instance,
  instance,
  type Observation,
  runReaders,
  waitUntil,
} from './load.js';

const require = createRequire(import.meta.url);

/** What the test needs of a client beyond what the store uses. */
type Client = RedisLike & {
  readonly status: string;
  flushall(): Promise<unknown>;
  dbsize(): Promise<number>;
  disconnect(): void;
  on(event: 'error', fn: () => void): unknown;
};

interface Kit {
  readonly name: string;
  readonly version: string;
  redis(url: string, fastFail: boolean): Client;
  cluster(nodes: Array<{ host: string; port: number }>): Client;
}

// Fails a command at once while Redis is away, instead of queueing it until Redis is back.
const FAST_FAIL = { enableOfflineQueue: false, maxRetriesPerRequest: 0 } as const;

const KITS: readonly Kit[] = [
  {
    name: 'ioredis 5',
    version: require('ioredis/package.json').version,
    redis: (url, fastFail) => new Redis5(url, fastFail ? FAST_FAIL : {}),
    cluster: (nodes) => new Cluster5(nodes),
  },
  {
    name: 'ioredis 6',
    version: require('ioredis6/package.json').version,
    redis: (url, fastFail) => new Redis6(url, fastFail ? FAST_FAIL : {}),
    cluster: (nodes) => new Cluster6(nodes),
  },
];

let cluster: Cluster;
let redis: RedisServer;
let redisCluster: RedisCluster;
// Everything a test opened, closed after it even when an assertion failed halfway.
const instances: Instance[] = [];
const clients: Client[] = [];

function client(make: () => Client): Client {
  const made = make();
  // A killed Redis makes every client emit 'error'; unheard, that is an uncaught exception.
  made.on('error', () => {});
  clients.push(made);
  return made;
}

function pausedReplica(): ReplicaNode {
  const replica = cluster.replicas[0];
  if (!replica) throw new Error('two replicas expected');
  return replica;
}

function livePort(): number {
  const replica = cluster.replicas[1];
  if (!replica) throw new Error('two replicas expected');
  return replica.port;
}

function app(store: RedisLike, detectLoss: boolean): Instance {
  const one = instance(cluster, {
    // Round-robin, so reads that may go to the paused replica do reach it, whatever the latencies.
    balancer: 'round-robin',
    probeIntervalMs: 100,
    tokenStore: redisTokenStore(store, { timeoutMs: 250, detectLoss }),
  });
  instances.push(one);
  return one;
}

/** The newest post id each user's completed write sessions produced: what a read must show. */
type Latest = Map<string, number>;

/**
 * A write for `user` on `a`, in the user's keyed session (which settles the store raise, or hands
 * it to the retry queue, before it resolves). Returns the WAL position inside the write's
 * transaction: a lower bound of what the store must end up holding for the user.
 */
async function post(a: Instance, user: string, latest: Latest): Promise<bigint> {
  const { id, lsn } = await a.router.session({ key: user }, () =>
    a.router.write(async (pool) => {
      const { rows } = await pool.query<{ id: string; lsn: string }>(
        'INSERT INTO posts (user_key) VALUES ($1) RETURNING id, pg_current_wal_insert_lsn()::text AS lsn',
        [user],
      );
      const row = rows[0];
      if (!row) throw new Error('INSERT returned no row');
      return { id: Number(row.id), lsn: parseLsn(row.lsn) };
    }),
  );
  if (id > (latest.get(user) ?? 0)) latest.set(user, id);
  return lsn;
}

/** `user`'s newest post as `b` sees it in the user's keyed session, judged against `latest` at the start. */
async function readLatest(b: Instance, user: string, latest: Latest): Promise<Observation> {
  const expected = latest.get(user) ?? 0;
  const row = await b.router.session({ key: user }, () =>
    b.router.read(async (pool) => {
      // The port comes from the server that ran the statement, not from the router's bookkeeping.
      const { rows } = await pool.query<{ port: number; latest: string | null }>(
        'SELECT inet_server_port() AS port, (SELECT max(id) FROM posts WHERE user_key = $1) AS latest',
        [user],
      );
      return rows[0];
    }),
  );
  return { port: Number(row?.port), stale: Number(row?.latest ?? 0) < expected };
}

async function inBatches<T>(items: readonly T[], size: number, each: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  [cluster, redis, redisCluster] = await Promise.all([
    startCluster({ replicas: 2 }),
    startRedis(),
    startRedisCluster(),
  ]);
  await cluster.primary.query('CREATE TABLE posts (id bigserial PRIMARY KEY, user_key text NOT NULL)');
  await cluster.primary.query('CREATE INDEX ON posts (user_key, id)');
  await cluster.waitForReplicas();
});

// Closed after each test, so idle instances of earlier runs do not probe on through later ones.
afterEach(async () => {
  for (const one of instances.splice(0)) await one.close();
  for (const one of clients.splice(0)) one.disconnect();
});

afterAll(async () => {
  await redisCluster?.stop();
  await redis?.stop();
  await cluster?.stop();
});

describe('ioredis clients', () => {
  it('ioredis 5 and 6, standalone and Cluster, satisfy RedisLike', () => {
    expectTypeOf<Redis5>().toExtend<RedisLike>();
    expectTypeOf<Cluster5>().toExtend<RedisLike>();
    expectTypeOf<Redis6>().toExtend<RedisLike>();
    expectTypeOf<Cluster6>().toExtend<RedisLike>();
    expect(KITS.map((kit) => kit.version)).toEqual([expect.stringMatching(/^5\./), expect.stringMatching(/^6\./)]);
  });
});

interface LossRun {
  kit: Kit;
  fastFail: boolean;
  detectLoss: boolean;
  tag: string;
}

/**
 * Users fall in three groups. Cold users are written once before the pause: the paused replica has
 * their data, so it may serve them without being stale. Dormant users get one more write after the
 * pause and none during the run: their stored LSN is ahead of the paused replica and only the store
 * (or loss detection, once the store forgot it) keeps their reads off it. Active users are written
 * throughout, also while Redis is down.
 */
async function lossRun({ kit, fastFail, detectLoss, tag }: LossRun) {
  const admin = client(() => kit.redis(redis.url, false));
  await admin.flushall();
  const stores = [client(() => kit.redis(redis.url, fastFail)), client(() => kit.redis(redis.url, fastFail))];
  const [a, b] = stores.map((store) => app(store, detectLoss)) as [Instance, Instance];
  await Promise.all([a.router.ready(), b.router.ready()]);
  // A fast-failing client refuses commands until connected: the run starts with the store answering.
  await waitUntil('Redis clients ready', () => stores.every((one) => one.status === 'ready'));

  const users = (group: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}-${group}-${i}`);
  const cold = users('cold', 64);
  const dormant = users('dormant', 64);
  const active = users('active', 32);
  const everyone = [...cold, ...dormant, ...active];
  const latest: Latest = new Map();

  // Every user's first post, in one statement: what the paused replica will still show.
  const rows = await cluster.primary.query<{ id: string; user_key: string }>(
    'INSERT INTO posts (user_key) SELECT unnest($1::text[]) RETURNING id, user_key',
    [everyone],
  );
  for (const row of rows) latest.set(row.user_key, Number(row.id));
  // First use of a shard marks it in Redis and requires the primary's position then: before the
  // pause, so those requirements are ones the paused replica has replayed. B having read every
  // shard also makes the restart a loss it is sure of (and reports), not a first use.
  await inBatches(everyone, 16, (user) => readLatest(b, user, latest));
  await cluster.waitForReplicas();
  const paused = pausedReplica();
  await paused.pauseReplay();
  try {
    await inBatches([...dormant, ...active], 16, (user) => post(a, user, latest));

    const events = { raiseErrors: 0, getErrors: 0, lossReports: 0, writeFailures: 0 };
    a.router.on('store-error', (e) => {
      if (e.operation === 'raise') events.raiseErrors++;
    });
    b.router.on('store-error', (e) => {
      if (e.operation === 'get') events.getErrors++;
    });
    // One event per shard whose loss B is sure of (it had read the shard before).
    b.router.on('store-data-lost', () => events.lossReports++);

    let phase: 'before' | 'outage' | 'after' = 'before';
    const pausedReads = { before: 0, outage: 0, after: 0 };
    // Lower bounds of writes that started once Redis was dead: each must be in the restarted Redis at the end.
    const sinceDeath = new Map<string, bigint>();
    let stopped = false;

    const writers = Array.from({ length: 3 }, async () => {
      while (!stopped) {
        const user = pick(active);
        const afterDeath = phase !== 'before';
        try {
          const lsn = await post(a, user, latest);
          if (afterDeath && lsn > (sinceDeath.get(user) ?? 0n)) sinceDeath.set(user, lsn);
        } catch {
          events.writeFailures++;
        }
        // Leaves the two CPUs of a small machine to the readers as well.
        await sleep(1);
      }
    });
    const report = emptyReport();
    const readers = runReaders(
      12,
      async () => {
        const seen = await readLatest(b, pick(everyone), latest);
        if (seen.port === paused.port) pausedReads[phase]++;
        return seen;
      },
      () => stopped,
      report,
    );

    await sleep(600);
    await redis.kill();
    phase = 'outage';
    // Long enough for store calls to time out (250 ms) and for raises to fail and queue.
    await sleep(400);
    await redis.start();
    phase = 'after';
    await sleep(1000);
    stopped = true;
    await Promise.all([...writers, readers]);

    // Raises that failed while Redis was down are retried in the background until they land.
    await waitUntil('pending raises to land', () => a.router.stats().pendingRaises === 0, 15_000);
    const checker = redisTokenStore(admin, { detectLoss });
    const missing: string[] = [];
    for (const [user, lsn] of sinceDeath) {
      const stored = (await checker.get(user, 3_600_000)).lsn;
      if (stored === undefined || stored < lsn) missing.push(user);
    }
    return { report, events, pausedReads, sinceDeath: sinceDeath.size, missing, pausedPort: paused.port };
  } finally {
    // The next test waits for the replicas before it pauses one again.
    await paused.resumeReplay();
  }
}

function summary(name: string, kit: Kit, run: Awaited<ReturnType<typeof lossRun>>): string {
  const { report, events, pausedReads } = run;
  return (
    `[${name}, ${kit.name} ${kit.version}] ${describeReport(report)} | paused replica :${run.pausedPort} served ` +
    `${pausedReads.before} before the loss, ${pausedReads.outage} during, ${pausedReads.after} after | ` +
    `A: ${events.raiseErrors} raises failed, ${events.writeFailures} writes failed, ${run.sinceDeath} users written ` +
    `since Redis died, ${run.missing.length} of them missing from Redis at the end | ` +
    `B: ${events.getErrors} lookups failed, loss reported for ${events.lossReports} shards`
  );
}

describe('Redis restarted empty under load (12 readers on B, 3 writers on A)', () => {
  describe.each(KITS.map((kit) => [kit.name, kit] as const))('%s', (_, kit) => {
    /** What every run with loss detection on must show. */
    const expectNoStaleRead = (run: Awaited<ReturnType<typeof lossRun>>): void => {
      expect(run.report.stale, describeReport(run.report)).toBe(0);
      expect(run.report.failed, describeReport(run.report)).toBe(0);
      expect(run.report.reads).toBeGreaterThan(300);
      // The paused replica did take reads that needed nothing newer (cold users, before the loss),
      // and the live one served reads too: both judged by the server's own port.
      expect(run.pausedReads.before).toBeGreaterThan(0);
      expect(run.report.byPort.get(livePort()) ?? 0).toBeGreaterThan(0);
      expect(run.events.lossReports).toBeGreaterThan(0);
      expect(run.events.writeFailures).toBe(0);
    };

    it('default client: no stale keyed read on the other instance', async () => {
      const run = await lossRun({ kit, fastFail: false, detectLoss: true, tag: `${kit.name}-queueing` });
      console.log(summary('restart, default client', kit, run));
      expectNoStaleRead(run);
      expect(run.missing).toEqual([]);
    });

    it('fast-failing client: no stale keyed read, and raises that failed in the outage land later', async () => {
      const run = await lossRun({ kit, fastFail: true, detectLoss: true, tag: `${kit.name}-fast` });
      console.log(summary('restart, fast-failing client', kit, run));
      expectNoStaleRead(run);
      // The outage did make raises fail, and every write made since Redis died is in Redis now.
      expect(run.events.raiseErrors).toBeGreaterThan(0);
      expect(run.sinceDeath).toBeGreaterThan(0);
      expect(run.missing).toEqual([]);
    });
  });

  it('control: with loss detection off, the same run reads stale (ioredis 5, default client)', async () => {
    const kit = KITS[0] as Kit;
    const run = await lossRun({ kit, fastFail: false, detectLoss: false, tag: 'control' });
    console.log(summary('restart, loss detection OFF', kit, run));
    // B trusts the empty store: dormant users' requirements are gone and the paused replica serves them.
    expect(run.report.stale, describeReport(run.report)).toBeGreaterThan(0);
    expect(run.pausedReads.after).toBeGreaterThan(0);
  });
});

describe('Redis Cluster (3 masters)', () => {
  it.each(KITS.map((kit) => [kit.name, kit] as const))(
    '%s: 500/500 cross-instance read-your-writes, keys on every master',
    async (_, kit) => {
      const masters = redisCluster.nodes.map((node) => client(() => kit.redis(node.url, false)));
      await Promise.all(masters.map((master) => master.flushall()));
      const connect = () => client(() => kit.cluster(redisCluster.startupNodes));
      const a = app(connect(), true);
      const b = app(connect(), true);
      await Promise.all([a.router.ready(), b.router.ready()]);
      const users = Array.from({ length: 100 }, (_, i) => `${kit.name}-cluster-${i}`);
      const latest: Latest = new Map();
      // Shards are marked before the pause, as above.
      await inBatches(users, 16, (user) => readLatest(b, user, latest));
      await cluster.waitForReplicas();
      const paused = pausedReplica();
      await paused.pauseReplay();
      try {
        let next = 0;
        const report = await runReaders(
          8,
          async () => {
            const user = users[next++ % users.length] as string;
            await post(a, user, latest);
            // Read right after the write: the paused replica would miss it, the store must say so.
            return readLatest(b, user, latest);
          },
          () => next >= 500,
        );
        const sizes = await Promise.all(masters.map((master) => master.dbsize()));
        console.log(
          `[Redis Cluster, ${kit.name} ${kit.version}] ${describeReport(report)} | DBSIZE per master ${sizes.join(' ')}`,
        );
        expect(report.reads, describeReport(report)).toBe(500);
        expect(report.failed).toBe(0);
        expect(report.stale).toBe(0);
        expect(report.byPort.get(paused.port) ?? 0).toBe(0);
        expect(report.byPort.get(livePort()) ?? 0).toBeGreaterThan(0);
        for (const size of sizes) expect(size).toBeGreaterThan(0);
      } finally {
        await paused.resumeReplay();
      }
    },
  );
});
