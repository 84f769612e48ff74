// CPU cost per select of the routing layer alone, with the network taken out: every node is a fake
// node-postgres client that answers at once. Compares a bare drizzle database, drizzle-orm's
// withReplicas and @lagless/drizzle, in interleaved rounds; reports medians of reads/s and of client CPU
// µs per read.
// On a shared machine the end-to-end bench (drizzle-select.ts) cannot resolve a few percent at
// concurrency 1; this one can.
//   node --conditions=lagless-source --import tsx bench/drizzle-overhead.ts [-- --reads 50000 --rounds 7]
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
import { benchOptions, interleave, round, rowOf, table, timed, writeResult } from './lib.js';

const { reads, rounds } = benchOptions({ reads: [50_000, 10_000], rounds: [7, 3] });

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

/** `reads` selects one after another: wall time and client CPU per read (they are the same work here). */
function run(db: Db) {
  return timed(reads, async () => {
    for (let i = 0; i < reads; i++) {
      const [row] = await db.select().from(kv).where(eq(kv.id, i));
      if (row?.id !== i) throw new Error(`read ${i}, got ${row?.id}`);
    }
  });
}

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
const samples = await interleave(names, rounds, (name) => run(contenders[name] as Db));
await lagless.$lagless.close();

writeResult({
  bench: 'drizzle-overhead',
  title:
    'CPU cost of the routing layer alone: drizzle selects over fake node-postgres clients that answer at once, one after another',
  options: { reads, rounds },
  contenders: {
    bare: 'drizzle database on one fake node',
    drizzle: "drizzle-orm's withReplicas over two fake replicas",
    lagless: '@lagless/drizzle withReplicas over two fake replicas (probeIntervalMs: 0)',
  },
  tables: [
    table(
      'select by primary key, no network',
      'reads/s',
      'bare',
      names.map((name) => rowOf(name, samples[name] ?? [])),
    ),
  ],
  notes: [
    'No network: the differences are the whole cost of each layer, so ratios here are larger than end to end (drizzle-select).',
  ],
  details: {
    microsecondsPerReadByRound: Object.fromEntries(
      names.map((name) => [name, (samples[name] ?? []).map((w) => round((w.ms * 1000) / reads, 2))]),
    ),
  },
});
