// CPU cost per select of the routing layer alone, with the network taken out: every node is a fake
// node-postgres client that answers at once. Compares a bare drizzle database, drizzle-orm's
// withReplicas and @lagless/drizzle, in interleaved rounds; reports medians in microseconds per read.
// On a shared machine the end-to-end bench (drizzle-select.ts) cannot resolve a few percent at
// concurrency 1; this one can.
//   node --conditions=lagless-source --import tsx bench/drizzle-overhead.ts [-- --reads 50000 --rounds 7]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { withReplicas } from '@lagless/drizzle';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import {
  withReplicas as drizzleWithReplicas,
  integer,
  type PgDatabase,
  type PgQueryResultHKT,
  pgTable,
  text,
} from 'drizzle-orm/pg-core';
import type pg from 'pg';

const { values } = parseArgs({ options: { reads: { type: 'string' }, rounds: { type: 'string' } } });
const reads = Number(values.reads ?? 50_000);
const rounds = Number(values.rounds ?? 7);

const kv = pgTable('kv', { id: integer('id').primaryKey(), v: text('v').notNull() });
type Db = PgDatabase<PgQueryResultHKT>;

/** Answers the router's probes like a healthy node of one cluster, and every select with one row. */
function fakeNode(role: 'primary' | 'replica'): Db {
  const client = {
    query(config: string | { text: string }, params?: unknown[]): Promise<unknown> {
      const textOf = typeof config === 'string' ? config : config.text;
      if (textOf.includes('pg_control_system')) {
        return Promise.resolve({
          rows: [{ id: '42', recovery: role === 'replica', replay: '0/100', lsn: '0/100', block: '8192' }],
        });
      }
      if (textOf.includes('pg_current_wal_insert_lsn')) return Promise.resolve({ rows: [{ lsn: '0/100' }] });
      if (textOf.includes('pg_last_wal_replay_lsn')) {
        return Promise.resolve({ rows: [{ recovery: true, replay: '0/100' }] });
      }
      const id = Number(params?.[0]);
      return Promise.resolve({ rows: [[id, 'v']], fields: [] });
    },
  };
  return drizzle(client as unknown as pg.Pool);
}

async function run(db: Db): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) {
    const [row] = await db.select().from(kv).where(eq(kv.id, i));
    if (row?.id !== i) throw new Error(`read ${i}, got ${row?.id}`);
  }
  return Number(process.hrtime.bigint() - started) / reads / 1000;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

const primary = fakeNode('primary');
const lagless = withReplicas(primary, [fakeNode('replica'), fakeNode('replica')], { probeIntervalMs: 0 });
await lagless.$lagless.ready();
const contenders: Record<string, Db> = {
  bare: fakeNode('replica'),
  drizzle: drizzleWithReplicas(primary, [fakeNode('replica'), fakeNode('replica')]),
  lagless,
};
const names = Object.keys(contenders);
for (const name of names) await run(contenders[name] as Db);
const samples = new Map<string, number[]>(names.map((name) => [name, []]));
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + round) % names.length] as string;
    samples.get(name)?.push(await run(contenders[name] as Db));
  }
}
await lagless.$lagless.close();

const us = Object.fromEntries([...samples].map(([name, xs]) => [name, +median(xs).toFixed(2)]));
const result = {
  bench: 'drizzle-overhead',
  date: new Date().toISOString(),
  node: process.version,
  reads,
  rounds,
  medianMicrosecondsPerRead: us,
  laglessMinusDrizzleUs: +((us.lagless ?? 0) - (us.drizzle ?? 0)).toFixed(2),
  samples: Object.fromEntries([...samples].map(([name, xs]) => [name, xs.map((x) => +x.toFixed(2))])),
};
console.log(
  names.map((name) => `${name} ${us[name]} µs/read`).join('  '),
  `| lagless − drizzle ${result.laglessMinusDrizzleUs} µs`,
);
writeFileSync(new URL('./results/drizzle-overhead.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
