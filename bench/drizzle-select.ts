// Select by primary key through drizzle, in one run: a bare replica database, drizzle-orm's own
// withReplicas, and @lagless/drizzle (default balancer and `latency`), at concurrency 1 and 32,
// with both replicas healthy and then with one replica slowed by +5 ms through the fault proxy.
// Rounds are interleaved (every contender once per round, in rotating order) so drift on a shared
// machine hits all alike; the figures are medians over rounds, with client CPU µs per query. Target
// (issue 11), healthy: lagless's client CPU per query at most 1.05× bare drizzle's.
//   node --conditions=lagless-source --import tsx bench/drizzle-select.ts [-- --rounds 7 --seconds 1 --driver node-postgres]
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
import { benchOptions, interleavedTable, measure, type ResultTable, target, type Window, writeResult } from './lib.js';

const { values } = parseArgs({ options: { driver: { type: 'string' } }, strict: false });
const { rounds, seconds, rows } = benchOptions({ rounds: [7, 2], seconds: [1, 0.25], rows: [10_000, 10_000] });
const driver = (typeof values.driver === 'string' ? values.driver : 'node-postgres') as 'node-postgres' | 'postgres.js';
const SLOW_MS = 5;
const CONCURRENCIES = [1, 32] as const;

const kv = pgTable('kv', { id: integer('id').primaryKey(), v: text('v').notNull() });
type Db = PgDatabase<PgQueryResultHKT>;

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

/** Reads by random primary key on `concurrency` loops for `ms`: a window of lib.ts's measure(). */
function run(db: Db, concurrency: number, ms: number): Promise<Window> {
  return measure(concurrency, ms, async (record) => {
    const id = 1 + Math.floor(Math.random() * rows);
    const [row] = await record.time('read', () => db.select().from(kv).where(eq(kv.id, id)));
    if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
  });
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
    for (const db of Object.values(contenders)) await run(db, 32, 1500);
    return contenders;
  };
  const scenarios: Array<{ name: string; urls: readonly [string, string]; latencyMs: number }> = [
    { name: 'healthy', urls: [fast.url, slowed.url], latencyMs: 0 },
    // Only the slowed replica goes through the proxy: its extra hop is part of what is measured.
    { name: `replica-1 +${SLOW_MS} ms`, urls: [fast.url, proxy.url(slowed.url)], latencyMs: SLOW_MS },
  ];

  const tables: ResultTable[] = [];
  const opsByRound: Record<string, Record<string, number[]>> = {};
  for (const { name: scenario, urls, latencyMs } of scenarios) {
    proxy.setLatency(latencyMs);
    const contenders = await contendersOver(urls);
    const names = Object.keys(contenders);
    for (const concurrency of CONCURRENCIES) {
      const title = `${scenario}, c=${concurrency}`;
      // Unmeasured: pools grown to this concurrency, latency estimates settled.
      for (const name of names) await run(contenders[name] as Db, concurrency, 300);
      const t = await interleavedTable(
        title,
        'reads/s',
        'bare',
        names,
        rounds,
        (name) => run(contenders[name] as Db, concurrency, seconds * 1000),
        'read',
        opsByRound,
      );
      if (scenario === 'healthy') {
        target('lagless CPU per query vs bare drizzle', t, 'lagless', (c) => c.ratios.cpu ?? undefined, '<=', 1.05);
      }
      tables.push(t);
    }
  }

  writeResult({
    bench: 'drizzle-select',
    title: `drizzle select by primary key over ${driver}, ${rows} rows, 2 replicas, healthy and with replica 1 +${SLOW_MS} ms (fault proxy)`,
    options: { rounds, seconds, rows, driver, slowedReplicaMs: SLOW_MS, postgres: cluster.serverVersion },
    contenders: {
      bare: 'drizzle database on replica 0 alone',
      drizzle: "drizzle-orm's withReplicas (random replica)",
      lagless: '@lagless/drizzle withReplicas, default balancer (least-connections)',
      'lagless-latency': "@lagless/drizzle withReplicas, balancer 'latency'",
    },
    tables,
    details: { readsPerSecByRound: opsByRound },
  });
  await Promise.all(closers.map((close) => close()));
} finally {
  await Promise.all(ends.map((end) => end().catch(() => {})));
  await proxy.close();
  await cluster.stop();
}
