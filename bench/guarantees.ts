// What each consistency guarantee costs on a mixed load (90 % reads by primary key, 10 % updates of
// a random row, 32 concurrent loops), through the Prisma fast path and through @lagless/drizzle over
// node-postgres, on one cluster with 2 replicas. Contenders, each its own router:
//   none                 consistency: 'none', outside sessions (replicas may be behind)
//   safe default         default options, outside sessions (a read honours this process's writes)
//   session              every request of 5 operations in $lagless.session(), monotonicReads: false
//   session + monotonic  the same with monotonicReads: true (the default)
// Rounds are interleaved per ORM (every contender once per round, in rotating order); figures are
// medians over rounds. Needs the generated Prisma client (`npm run generate`).
//   node --conditions=lagless-source --import tsx bench/guarantees.ts [-- --rounds 5 --seconds 2 --warmup 1]
//     [--writes 0.1 --concurrency 32 --rows 1000 --orm prisma,drizzle]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { LaglessHandle, RouterOptions, RouterStats } from '@lagless/core';
import { withReplicas } from '@lagless/drizzle';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { PrismaClient } from '../packages/prisma/test/generated/client.js';
import {
  benchOptions,
  interleave,
  measure,
  type Recorder,
  type ResultTable,
  round,
  seedUsers,
  summarize,
  table,
  target,
  type Window,
  writeResult,
} from './lib.js';

const { values } = parseArgs({ options: { orm: { type: 'string' } }, strict: false });
const {
  rounds,
  seconds,
  warmup: warmupSeconds,
  rows,
  concurrency,
  writes: WRITE_SHARE,
} = benchOptions({
  rounds: [5, 2],
  seconds: [2, 0.3],
  warmup: [1, 0.3],
  rows: [1000, 1000],
  concurrency: [32, 32],
  writes: [0.1, 0.1],
});
const orms = (typeof values.orm === 'string' ? values.orm : 'prisma,drizzle').split(',');
const OPS_PER_REQUEST = 5;
// Enough for 32 loops without queueing on the pool, small enough that 4 Prisma clients and the
// shared drizzle pools stay under the testkit's max_connections (200) on every node.
const POOL_MAX = 32;
const PRISMA_POOL_MAX = 16;

type Options = Pick<RouterOptions, 'consistency' | 'monotonicReads'>;
const CONTENDERS: Record<string, { options: Options; session: boolean; description: string }> = {
  none: { options: { consistency: 'none' }, session: false, description: "consistency: 'none', outside sessions" },
  'safe default': { options: {}, session: false, description: 'default options, outside sessions' },
  session: {
    options: { monotonicReads: false },
    session: true,
    description: `each request of ${OPS_PER_REQUEST} ops in $lagless.session(), monotonicReads: false`,
  },
  'session + monotonic': {
    options: { monotonicReads: true },
    session: true,
    description: `each request of ${OPS_PER_REQUEST} ops in $lagless.session(), monotonicReads: true`,
  },
};
const NAMES = Object.keys(CONTENDERS);

/** One contender as the load sees it, whichever ORM is underneath. */
interface Target {
  read(id: number): Promise<void>;
  write(id: number): Promise<void>;
  readonly lagless: LaglessHandle;
}

const users = pgTable('User', {
  id: integer('id').primaryKey(),
  email: text('email').notNull(),
  name: text('name').notNull(),
});

const cleanups: Array<() => Promise<unknown>> = [];
const randomId = () => 1 + Math.floor(Math.random() * rows);
const newName = () => Math.random().toString(36).slice(2);

function prismaTarget(cluster: Cluster, options: Options): Target {
  const node = (url: string) => new PrismaPg({ connectionString: url, max: PRISMA_POOL_MAX });
  const adapter = laglessAdapter({
    primary: node(cluster.primary.url),
    replicas: cluster.replicas.map((replica) => node(replica.url)),
    ...options,
  });
  const prisma = new PrismaClient({ adapter }).$extends(readReplicas());
  cleanups.push(async () => {
    await prisma.$lagless.close();
    await prisma.$disconnect();
  });
  return {
    async read(id) {
      const row = await prisma.user.findUnique({ where: { id } });
      if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
    },
    async write(id) {
      await prisma.user.update({ where: { id }, data: { name: newName() } });
    },
    lagless: prisma.$lagless,
  };
}

/** Contenders share the pools: they differ only in router options and never run at the same time. */
function drizzleTargets(cluster: Cluster): (options: Options) => Target {
  const connect = (url: string) => {
    const pool = new pg.Pool({ connectionString: url, max: POOL_MAX });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    return drizzle(pool);
  };
  const primary = connect(cluster.primary.url);
  const replicas = cluster.replicas.map((replica) => connect(replica.url));
  return (options) => {
    const db = withReplicas(primary, replicas, options);
    // Unshift: routers close before the pools under them end.
    cleanups.unshift(() => db.$lagless.close());
    return {
      async read(id) {
        const [row] = await db.select().from(users).where(eq(users.id, id));
        if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
      },
      async write(id) {
        await db.update(users).set({ name: newName() }).where(eq(users.id, id));
      },
      lagless: db.$lagless,
    };
  };
}

async function request(target: Target, record: Recorder): Promise<void> {
  for (let i = 0; i < OPS_PER_REQUEST; i++) {
    const id = randomId();
    if (Math.random() < WRITE_SHARE) await record.time('write', () => target.write(id));
    else await record.time('read', () => target.read(id));
  }
}

interface Sample {
  window: Window;
  /** Router counters over the window (a batched Prisma statement counts as one read). */
  replicaReads: number;
  primaryReads: number;
  waits: number;
  fallbacks: number;
  walProbes: number;
}

async function sample(target: Target, session: boolean, ms: number): Promise<Sample> {
  const before = target.lagless.stats();
  const window = await measure(concurrency, ms, (record) =>
    session ? target.lagless.session(() => request(target, record)) : request(target, record),
  );
  const after: RouterStats = target.lagless.stats();
  return {
    window,
    replicaReads: after.reads.replica - before.reads.replica,
    primaryReads: after.reads.primary - before.reads.primary,
    waits: after.reads.waits - before.reads.waits,
    fallbacks: after.reads.fallbacks - before.reads.fallbacks,
    walProbes: after.walProbes - before.walProbes,
  };
}

interface Row {
  readsPerSec: number;
  opsPerSec: number;
  cpuUsPerOp: number;
  readP50Ms: number;
  readP99Ms: number;
  writeP50Ms: number;
  writeP99Ms: number;
  /** Share of routed reads served by replicas, over all rounds. */
  replicaShare: number;
  waitsPerRound: number;
  fallbacksPerRound: number;
  walProbesPerWrite: number;
  vsNone?: { reads: number; ops: number; cpu: number; readP99: number };
  readsPerSecByRound: number[];
}

function toRow(samples: readonly Sample[]): Row {
  const summary = summarize(samples.map((s) => s.window));
  const sum = (pick: (s: Sample) => number) => samples.reduce((total, s) => total + pick(s), 0);
  const replica = sum((s) => s.replicaReads);
  const writes = sum((s) => s.window.byKind.write?.ops ?? 0);
  return {
    readsPerSec: summary.byKind.read?.opsPerSec ?? Number.NaN,
    opsPerSec: summary.opsPerSec,
    cpuUsPerOp: summary.cpuUsPerOp,
    readP50Ms: summary.byKind.read?.p50Ms ?? Number.NaN,
    readP99Ms: summary.byKind.read?.p99Ms ?? Number.NaN,
    writeP50Ms: summary.byKind.write?.p50Ms ?? Number.NaN,
    writeP99Ms: summary.byKind.write?.p99Ms ?? Number.NaN,
    replicaShare: round(replica / (replica + sum((s) => s.primaryReads)), 3),
    waitsPerRound: round(sum((s) => s.waits) / samples.length),
    fallbacksPerRound: round(sum((s) => s.fallbacks) / samples.length),
    walProbesPerWrite: round(sum((s) => s.walProbes) / writes, 3),
    readsPerSecByRound: samples.map((s) => round(s.window.byKind.read?.opsPerSec ?? 0)),
  };
}

async function bench(cluster: Cluster, targets: Record<string, Target>): Promise<Record<string, Row>> {
  await Promise.all(Object.values(targets).map((target) => target.lagless.ready()));
  const run = async (name: string, ms: number) => {
    const contender = CONTENDERS[name];
    const target = targets[name];
    if (!contender || !target) throw new Error(`no contender ${name}`);
    // Every window starts from caught-up replicas, whatever the previous one left behind.
    await cluster.waitForReplicas();
    return sample(target, contender.session, ms);
  };
  // Unmeasured: JIT, pools grown to the concurrency, the table in shared buffers everywhere.
  for (const name of NAMES) await run(name, warmupSeconds * 1000);
  const samples = await interleave(NAMES, rounds, (name) => run(name, seconds * 1000));
  const table: Record<string, Row> = {};
  for (const name of NAMES) table[name] = toRow(samples[name] ?? []);
  const none = table.none;
  for (const row of Object.values(table)) {
    if (!none) break;
    row.vsNone = {
      reads: round(row.readsPerSec / none.readsPerSec, 3),
      ops: round(row.opsPerSec / none.opsPerSec, 3),
      cpu: round(row.cpuUsPerOp / none.cpuUsPerOp, 3),
      readP99: round(row.readP99Ms / none.readP99Ms, 3),
    };
  }
  return table;
}

/** The table of one ORM in lib.ts's shape: reads/s and read latency, CPU over every operation. */
function resultTable(orm: string, rowsByName: Record<string, Row>): ResultTable {
  const t = table(
    `${orm}, c=${concurrency}, ${100 * WRITE_SHARE} % writes`,
    'reads/s',
    'none',
    NAMES.map((name) => {
      const row = rowsByName[name] as Row;
      return {
        name,
        throughput: row.readsPerSec,
        cpuUsPerQuery: row.cpuUsPerOp,
        latency: { p50Ms: row.readP50Ms, p99Ms: row.readP99Ms },
        extra: {
          opsPerSec: row.opsPerSec,
          replicaPct: round(100 * row.replicaShare, 1),
          waitsPerRound: row.waitsPerRound,
          fallbacksPerRound: row.fallbacksPerRound,
          walProbesPerWrite: row.walProbesPerWrite,
        },
      };
    }),
    {
      extraColumns: {
        opsPerSec: 'ops/s',
        replicaPct: '% on replicas',
        waitsPerRound: 'waits/window',
        fallbacksPerRound: 'fallbacks/window',
        walProbesPerWrite: 'WAL probes/write',
      },
    },
  );
  target('safe default reads/s vs none', t, 'safe default', (c) => c.ratios.throughput, '>=', 0.9);
  return t;
}

// Client and servers share the machine's CPUs: a busy machine shows here, not only in noisier rounds.
const loadBefore = loadavg().map((x) => round(x, 2));
const cluster = await startCluster({ replicas: 2 });
try {
  await seedUsers(cluster, rows);

  const results: Record<string, Record<string, Row>> = {};
  if (orms.includes('prisma')) {
    results['prisma fast path'] = await bench(
      cluster,
      Object.fromEntries(NAMES.map((name) => [name, prismaTarget(cluster, CONTENDERS[name]?.options ?? {})])),
    );
  }
  if (orms.includes('drizzle')) {
    const drizzleTarget = drizzleTargets(cluster);
    results['drizzle node-postgres'] = await bench(
      cluster,
      Object.fromEntries(NAMES.map((name) => [name, drizzleTarget(CONTENDERS[name]?.options ?? {})])),
    );
  }

  writeResult({
    bench: 'guarantees',
    title: `What each consistency guarantee costs: ${100 - 100 * WRITE_SHARE} % reads by primary key, ${100 * WRITE_SHARE} % updates, ${concurrency} loops, Prisma fast path and @lagless/drizzle over node-postgres, 2 replicas`,
    options: {
      rounds,
      seconds,
      warmupSeconds,
      rows,
      concurrency,
      writeShare: WRITE_SHARE,
      opsPerRequest: OPS_PER_REQUEST,
      postgres: cluster.serverVersion,
    },
    contenders: Object.fromEntries(NAMES.map((name) => [name, CONTENDERS[name]?.description ?? name])),
    tables: Object.entries(results).map(([orm, rowsByName]) => resultTable(orm, rowsByName)),
    notes: ['CPU µs/q is over every operation of a window (reads and writes); reads/s and latency are of reads.'],
    details: { loadAverage: { before: loadBefore, after: loadavg().map((x) => round(x, 2)) }, results },
  });
} finally {
  for (const cleanup of cleanups) await cleanup().catch(() => {});
  await cluster.stop();
}
