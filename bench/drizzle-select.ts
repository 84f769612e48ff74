// Select by primary key through drizzle, in one run: a bare replica database, drizzle-orm's own
// withReplicas, and @lagless/drizzle (default balancer and `latency`), at concurrency 1 and 32,
// with both replicas healthy and then with one replica slowed by +5 ms through the fault proxy.
// Rounds are interleaved (every contender once per round, in rotating order) so drift on a shared
// machine hits all alike; the figures are medians over rounds.
//   node --conditions=lagless-source --import tsx bench/drizzle-select.ts [-- --rounds 7 --seconds 1 --driver node-postgres]
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { withReplicas } from '@lagless/drizzle';
import { createFaultProxy, startCluster } from '@lagless/testkit';
import { eq } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import {
  withReplicas as drizzleWithReplicas,
  integer,
  type PgDatabase,
  type PgQueryResultHKT,
  pgTable,
  text,
} from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    driver: { type: 'string' },
    rows: { type: 'string' },
  },
});
const rounds = Number(values.rounds ?? 7);
const seconds = Number(values.seconds ?? 1);
const driver = (values.driver ?? 'node-postgres') as 'node-postgres' | 'postgres.js';
const rows = Number(values.rows ?? 10_000);
const SLOW_MS = 5;
const CONCURRENCIES = [1, 32] as const;

const kv = pgTable('kv', { id: integer('id').primaryKey(), v: text('v').notNull() });
type Db = PgDatabase<PgQueryResultHKT>;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

const ends: Array<() => Promise<unknown>> = [];
function connect(url: string): Db {
  // Pools larger than the highest concurrency, so no contender queues on its own pool.
  if (driver === 'node-postgres') {
    const pool = new pg.Pool({ connectionString: url, max: 40 });
    pool.on('error', () => {});
    ends.push(() => pool.end());
    return drizzleNodePg(pool);
  }
  const client = postgres(url, { max: 40, onnotice: () => {} });
  ends.push(() => client.end({ timeout: 1 }));
  return drizzlePostgresJs(client);
}

/** Reads by random primary key on `concurrency` loops for `ms`; returns reads per second. */
async function measure(db: Db, concurrency: number, ms: number): Promise<number> {
  const deadline = performance.now() + ms;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const id = 1 + Math.floor(Math.random() * rows);
        const [row] = await db.select().from(kv).where(eq(kv.id, id));
        if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
        done++;
      }
    }),
  );
  return done / (ms / 1000);
}

const cluster = await startCluster({ replicas: 2 });
const proxy = await createFaultProxy({ target: cluster.replicas[1]?.url ?? '', latencyMs: 0 });
try {
  await cluster.primary.query('CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL)');
  await cluster.primary.query(`INSERT INTO kv SELECT i, md5(i::text) FROM generate_series(1, ${rows}) i`);
  await cluster.primary.query('ANALYZE kv');
  await cluster.waitForReplicas();
  const [fast, slowed] = cluster.replicas;
  if (!fast || !slowed) throw new Error('two replicas expected');

  const primary = connect(cluster.primary.url);
  const closers: Array<() => Promise<void>> = [];
  /** The four contenders over the given replica URLs (each with its own pools). */
  const contendersOver = async (replicaUrls: readonly [string, string]): Promise<Record<string, Db>> => {
    const replicas = () => replicaUrls.map((url) => connect(url));
    const lagless = withReplicas(primary, replicas());
    const laglessLatency = withReplicas(primary, replicas(), { balancer: 'latency' });
    await Promise.all([lagless.$lagless.ready(), laglessLatency.$lagless.ready()]);
    closers.push(lagless.$lagless.close, laglessLatency.$lagless.close);
    const contenders: Record<string, Db> = {
      bare: connect(fast.url),
      drizzle: drizzleWithReplicas(primary, replicas() as [Db, Db]),
      lagless,
      'lagless-latency': laglessLatency,
    };
    // Unmeasured: JIT, connections, the table in shared buffers. Without it the first contender of
    // the first scenario ran at half speed.
    for (const db of Object.values(contenders)) await measure(db, 32, 1500);
    return contenders;
  };
  const scenarios: Array<{ name: string; urls: readonly [string, string]; latencyMs: number }> = [
    { name: 'healthy', urls: [fast.url, slowed.url], latencyMs: 0 },
    // Only the slowed replica goes through the proxy: its extra hop is part of what is measured.
    { name: `replica-1 +${SLOW_MS} ms`, urls: [fast.url, proxy.url(slowed.url)], latencyMs: SLOW_MS },
  ];

  const results: Record<string, Record<string, Record<string, { medianOps: number; ops: number[] }>>> = {};
  for (const { name: scenario, urls, latencyMs } of scenarios) {
    proxy.setLatency(latencyMs);
    const contenders = await contendersOver(urls);
    const names = Object.keys(contenders);
    results[scenario] = {};
    for (const concurrency of CONCURRENCIES) {
      const samples = new Map<string, number[]>(names.map((name) => [name, []]));
      // Unmeasured: pools grown to this concurrency, latency estimates settled.
      for (const name of names) await measure(contenders[name] as Db, concurrency, 300);
      for (let round = 0; round < rounds; round++) {
        const order = names.map((_, i) => names[(i + round) % names.length] as string);
        for (const name of order)
          samples.get(name)?.push(await measure(contenders[name] as Db, concurrency, seconds * 1000));
      }
      const row: Record<string, { medianOps: number; ops: number[] }> = {};
      for (const [name, ops] of samples) row[name] = { medianOps: Math.round(median(ops)), ops: ops.map(Math.round) };
      results[scenario][`c=${concurrency}`] = row;
      const ratio = (a: string, b: string) => ((row[a]?.medianOps ?? 0) / (row[b]?.medianOps ?? 1)).toFixed(2);
      console.log(
        `${scenario.padEnd(16)} c=${String(concurrency).padEnd(3)} ${names
          .map((name) => `${name} ${row[name]?.medianOps}/s`)
          .join(
            '  ',
          )}  | lagless/drizzle ${ratio('lagless', 'drizzle')}  lagless-latency/drizzle ${ratio('lagless-latency', 'drizzle')}  lagless/bare ${ratio('lagless', 'bare')}`,
      );
    }
  }

  const ratios: Record<string, Record<string, Record<string, number>>> = {};
  for (const [scenario, byConcurrency] of Object.entries(results)) {
    ratios[scenario] = {};
    for (const [concurrency, row] of Object.entries(byConcurrency)) {
      const of = (name: string) => row[name]?.medianOps ?? Number.NaN;
      ratios[scenario][concurrency] = {
        'drizzle/bare': +(of('drizzle') / of('bare')).toFixed(3),
        'lagless/bare': +(of('lagless') / of('bare')).toFixed(3),
        'lagless/drizzle': +(of('lagless') / of('drizzle')).toFixed(3),
        'lagless-latency/drizzle': +(of('lagless-latency') / of('drizzle')).toFixed(3),
      };
    }
  }
  const result = {
    bench: 'drizzle-select',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    postgres: cluster.serverVersion,
    driver,
    rows,
    rounds,
    secondsPerRound: seconds,
    slowedReplicaMs: SLOW_MS,
    contenders: {
      bare: 'drizzle database on replica 0 alone',
      drizzle: "drizzle-orm's withReplicas (random replica)",
      lagless: '@lagless/drizzle withReplicas, default balancer (least-connections)',
      'lagless-latency': "@lagless/drizzle withReplicas, balancer 'latency'",
    },
    ratios,
    results,
  };
  writeFileSync(new URL('./results/drizzle.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  await Promise.all(closers.map((close) => close()));
} finally {
  await Promise.all(ends.map((end) => end().catch(() => {})));
  await proxy.close();
  await cluster.stop();
}
