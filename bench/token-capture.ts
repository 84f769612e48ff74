// The write cost of capturing consistency tokens, through the core router over node-postgres
// (`pgNode` pools; no ORM, so the figures are the router's and the probe's alone). Each write is one
// `UPDATE kv SET v = v + 1 WHERE id = $1` of a random row among 10,000 (little row contention):
//   bare             the pg pool directly, no router, no token (the baseline)
//   none             router.write() with consistency: 'none' (the router, no token)
//   naive            the pg pool, then `SELECT pg_current_wal_lsn()` on the primary after each write:
//                    what capturing a token costs done by hand (one more round trip per write)
//   lagless          each write in its own router.session(), router.token() taken after it: the
//                    position comes from lagless's shared WAL probe (concurrent writers share one)
// at concurrency 1 and 32, in interleaved rounds; medians. Target (issue 11): lagless's write
// throughput at concurrency 32 at least 0.95× bare.
//   node --conditions=lagless-source --import tsx bench/token-capture.ts [-- --rounds 5 --seconds 1 --warmup 1]
import { createRouter, type Router } from '@lagless/core';
import { startCluster } from '@lagless/testkit';
import type pg from 'pg';
import {
  benchOptions,
  clusterPgNodes,
  interleave,
  measure,
  type ResultTable,
  type RowInput,
  round,
  rowOf,
  table,
  target,
  type Window,
  writeResult,
} from './lib.js';

const options = benchOptions({ rounds: [5, 2], seconds: [1, 0.3], warmup: [1, 0.3], rows: [10_000, 10_000] });
const CONCURRENCIES = [1, 32] as const;
// Above the highest concurrency: no contender queues on its own pool.
const POOL_MAX = 40;

const CONTENDERS: Record<string, string> = {
  bare: 'pg pool on the primary, no router, no token',
  none: "router.write() with consistency: 'none' (no token)",
  naive: 'pg pool, then SELECT pg_current_wal_lsn() on the primary after each write (one extra round trip)',
  lagless: "each write in router.session(), router.token() after it (lagless's shared WAL probe)",
};
const NAMES = Object.keys(CONTENDERS);

type Pool = pg.Pool;
const randomId = () => 1 + Math.floor(Math.random() * options.rows);
const UPDATE = 'UPDATE kv SET v = v + 1 WHERE id = $1';

const cluster = await startCluster({ replicas: 2 });
const { primary: primaryNode, replicas: replicaNodes, all: nodes } = clusterPgNodes(cluster, POOL_MAX);
const routers: Router<Pool>[] = [];
try {
  await cluster.primary.query('CREATE TABLE kv (id int PRIMARY KEY, v bigint NOT NULL)');
  await cluster.primary.query(`INSERT INTO kv SELECT i, 0 FROM generate_series(1, ${options.rows}) i`);
  await cluster.waitForReplicas();

  const routerWith = (consistency: 'none' | 'session') => {
    const router = createRouter<Pool>({
      primary: primaryNode,
      replicas: replicaNodes,
      consistency,
      logger: false,
    });
    routers.push(router);
    return router;
  };
  const none = routerWith('none');
  const lagless = routerWith('session');
  await Promise.all(routers.map((router) => router.ready()));
  const pool = primaryNode.client;

  const writes: Record<string, () => Promise<unknown>> = {
    bare: () => pool.query(UPDATE, [randomId()]),
    none: () => none.write((client) => client.query(UPDATE, [randomId()])),
    naive: async () => {
      await pool.query(UPDATE, [randomId()]);
      const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      if (!rows[0]?.lsn) throw new Error('no WAL position');
    },
    lagless: () =>
      lagless.session(async () => {
        await lagless.write((client) => client.query(UPDATE, [randomId()]));
        if ((await lagless.token()) === undefined) throw new Error('no token after a write');
      }),
  };

  const run = async (name: string, concurrency: number, seconds: number) => {
    const write = writes[name];
    if (!write) throw new Error(`no contender ${name}`);
    const probesBefore = lagless.stats().walProbes;
    const window = await measure(concurrency, seconds * 1000, async (record) => {
      await record.time('write', write);
    });
    return { window, walProbes: lagless.stats().walProbes - probesBefore };
  };

  const tables: ResultTable[] = [];
  const details: Record<string, Record<string, number[]>> = {};
  for (const concurrency of CONCURRENCIES) {
    // Unmeasured: JIT, pools grown to this concurrency.
    for (const name of NAMES) await run(name, concurrency, options.warmup);
    const samples = await interleave(NAMES, options.rounds, (name) => run(name, concurrency, options.seconds));
    const rows: RowInput[] = NAMES.map((name) => {
      const list = samples[name] ?? [];
      const windows: Window[] = list.map((s) => s.window);
      const ops = windows.reduce((sum, w) => sum + w.ops, 0);
      const probes = list.reduce((sum, s) => sum + s.walProbes, 0);
      const row = rowOf(name, windows, 'write');
      // Only the lagless contender's router probes; the others take no token through it.
      return name === 'lagless' ? { ...row, extra: { walProbesPerWrite: round(probes / ops, 3) } } : row;
    });
    details[`c=${concurrency}`] = Object.fromEntries(
      NAMES.map((name) => [name, (samples[name] ?? []).map((s) => round(s.window.opsPerSec))]),
    );
    const t = table(`writes, c=${concurrency}`, 'writes/s', 'bare', rows, {
      extraColumns: { walProbesPerWrite: 'WAL probes/write (lagless)' },
    });
    if (concurrency === 32) {
      target('lagless write throughput at c=32 vs bare', t, 'lagless', (c) => c.ratios.throughput, '>=', 0.95);
    }
    tables.push(t);
  }

  writeResult({
    bench: 'token-capture',
    title: 'Write cost of token capture: core router over node-postgres, UPDATE of a random row, concurrency 1 and 32',
    options: { ...options, poolMax: POOL_MAX, postgres: cluster.serverVersion },
    contenders: CONTENDERS,
    tables,
    notes: ["WAL probes/write: the lagless router's round trips for the primary's WAL position, per write."],
    details: { writesPerSecByRound: details },
  });
} finally {
  for (const router of routers) await router.close().catch(() => {});
  for (const node of nodes) await node.end().catch(() => {});
  await cluster.stop();
}
