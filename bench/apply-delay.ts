// Consistent reads while one replica applies WAL late: replica1 at setApplyDelay(20) (testkit's
// `recovery_min_apply_delay`), replica2 at once, through the core router over node-postgres with
// default options (least-connections, consistency 'session'). Workloads, 32 concurrent loops:
//   session          each loop iteration is a router.session(): an UPDATE of the loop's own row
//                    (`v = GREATEST(v, n)` with n rising), then a read of that row: it must see n
//   plain            outside sessions (the process scope): 10 % updates, 90 % reads of 1,000 rows;
//                    a read must see every update of its row that finished before it started
//   session, 'none'  the session workload on a router with consistency: 'none': the control that
//                    shows a stale read is caught when it happens (only under the delay)
// Every read returns `inet_server_port()`, so the node that served it is named by the server, not by
// our counters. Each workload runs with the delay and without it (replica1 at 0), in interleaved
// rounds; "extra latency" is a read's p50/p99 with the delay minus the same without. Targets
// (issue 11), session reads under the delay: ≥ 90 % served by replicas, 0 stale, p99 extra ≤ 22 ms.
//   node --conditions=lagless-source --import tsx bench/apply-delay.ts [-- --rounds 4 --seconds 1 --warmup 1]
import { createRouter, type Router } from '@lagless/core';
import { startCluster } from '@lagless/testkit';
import type pg from 'pg';
import {
  benchOptions,
  clusterPgNodes,
  interleave,
  measure,
  type Recorder,
  type RowInput,
  round,
  rowOf,
  table,
  target,
  type Window,
  writeResult,
} from './lib.js';

const options = benchOptions({
  rounds: [4, 2],
  seconds: [1, 0.4],
  warmup: [1, 0.3],
  delay: [20, 20],
  concurrency: [32, 32],
});
const ROWS = 1000;
const WRITE_SHARE = 0.1;
const POOL_MAX = 40;

type Pool = pg.Pool;

const cluster = await startCluster({ replicas: 2 });
const [delayed, prompt] = cluster.replicas;
if (!delayed || !prompt) throw new Error('two replicas expected');
const { primary: primaryNode, replicas: replicaNodes, all: nodes } = clusterPgNodes(cluster, POOL_MAX);
const routers: Router<Pool>[] = [];
const nodeByPort = new Map<number, string>(
  [cluster.primary, ...cluster.replicas].map((node) => [Number(new URL(node.url).port), node.name]),
);
const primaryName = cluster.primary.name;

/** Reads served per node and stale reads, over one window. */
interface Tally {
  byNode: Map<string, number>;
  stale: number;
}

// A value per update, rising: an update never lowers a row (GREATEST), so "sees n" is "v >= n".
let counter = 0;
/** Per row, the highest value whose update has finished: what any later read of the row must see. */
const finished = new Map<number, number>();

async function update(router: Router<Pool>, id: number): Promise<number> {
  const n = ++counter;
  await router.write((client) => client.query('UPDATE kv SET v = GREATEST(v, $2) WHERE id = $1', [id, n]));
  if ((finished.get(id) ?? 0) < n) finished.set(id, n);
  return n;
}

async function read(router: Router<Pool>, record: Recorder, tally: Tally, id: number, mustSee: number): Promise<void> {
  const { rows } = await record.time('read', () =>
    router.read((client) =>
      client.query<{ v: string; port: number }>('SELECT v, inet_server_port() AS port FROM kv WHERE id = $1', [id]),
    ),
  );
  const row = rows[0];
  if (!row) throw new Error(`row ${id} missing`);
  const node = nodeByPort.get(Number(row.port)) ?? `port ${row.port}`;
  tally.byNode.set(node, (tally.byNode.get(node) ?? 0) + 1);
  if (Number(row.v) < mustSee) tally.stale++;
}

const WORKLOADS = {
  session: (router: Router<Pool>, tally: Tally) => (record: Recorder, loop: number) =>
    router.session(async () => {
      // The loop's own row: no other loop writes it, so the session's write is the one to see.
      const id = loop + 1;
      const n = await record.time('write', () => update(router, id));
      await read(router, record, tally, id, n);
    }),
  plain: (router: Router<Pool>, tally: Tally) => async (record: Recorder) => {
    const id = 1 + Math.floor(Math.random() * ROWS);
    if (Math.random() < WRITE_SHARE) await record.time('write', () => update(router, id));
    // Read before the await: updates finishing during the read need not show.
    else await read(router, record, tally, id, finished.get(id) ?? 0);
  },
};

try {
  await cluster.primary.query('CREATE TABLE kv (id int PRIMARY KEY, v bigint NOT NULL)');
  await cluster.primary.query(`INSERT INTO kv SELECT i, 0 FROM generate_series(1, ${ROWS}) i`);
  await cluster.waitForReplicas();
  const routerWith = (consistency: 'none' | 'session') => {
    const router = createRouter<Pool>({ primary: primaryNode, replicas: replicaNodes, consistency, logger: false });
    routers.push(router);
    return router;
  };
  const lagless = routerWith('session');
  const control = routerWith('none');
  await Promise.all(routers.map((router) => router.ready()));

  // Contender = workload × delay; the delay is switched before each window that needs the other one.
  const CONTENDERS: Record<string, { workload: keyof typeof WORKLOADS; router: Router<Pool>; delayMs: number }> = {
    'session, no delay': { workload: 'session', router: lagless, delayMs: 0 },
    session: { workload: 'session', router: lagless, delayMs: options.delay },
    'plain, no delay': { workload: 'plain', router: lagless, delayMs: 0 },
    plain: { workload: 'plain', router: lagless, delayMs: options.delay },
    "session, 'none' (control)": { workload: 'session', router: control, delayMs: options.delay },
  };
  const names = Object.keys(CONTENDERS);
  let delayNow = -1;
  const run = async (name: string, seconds: number) => {
    const contender = CONTENDERS[name];
    if (!contender) throw new Error(`no contender ${name}`);
    if (contender.delayMs !== delayNow) {
      await delayed.setApplyDelay(contender.delayMs);
      delayNow = contender.delayMs;
    }
    // Every window starts from caught-up replicas, whatever the previous one left behind.
    await cluster.waitForReplicas();
    const tally: Tally = { byNode: new Map(), stale: 0 };
    const before = contender.router.stats().reads;
    const body = WORKLOADS[contender.workload](contender.router, tally);
    const window = await measure(options.concurrency, seconds * 1000, body);
    const after = contender.router.stats().reads;
    return { window, tally, waits: after.waits - before.waits, fallbacks: after.fallbacks - before.fallbacks };
  };
  for (const name of names) await run(name, options.warmup);
  const samples = await interleave(names, options.rounds, (name) => run(name, options.seconds));
  await delayed.setApplyDelay(0);

  const rowFor = (name: string): RowInput => {
    const list = samples[name] ?? [];
    const windows: Window[] = list.map((s) => s.window);
    const reads = new Map<string, number>();
    for (const s of list) for (const [node, n] of s.tally.byNode) reads.set(node, (reads.get(node) ?? 0) + n);
    const total = [...reads.values()].reduce((a, b) => a + b, 0);
    const onReplicas = total - (reads.get(primaryName) ?? 0);
    return {
      ...rowOf(name, windows, 'read'),
      extra: {
        readsTotal: total,
        replicaPct: round((100 * onReplicas) / total, 1),
        delayedPct: round((100 * (reads.get(delayed.name) ?? 0)) / total, 1),
        stale: list.reduce((sum, s) => sum + s.tally.stale, 0),
        waitsPerWindow: round(list.reduce((sum, s) => sum + s.waits, 0) / list.length, 1),
        fallbacksPerWindow: round(list.reduce((sum, s) => sum + s.fallbacks, 0) / list.length, 1),
      },
    };
  };
  const withExtraLatency = (row: RowInput, base: RowInput): RowInput => ({
    ...row,
    extra: {
      ...row.extra,
      extraP50Ms: round((row.latency?.p50Ms ?? Number.NaN) - (base.latency?.p50Ms ?? Number.NaN), 2),
      extraP99Ms: round((row.latency?.p99Ms ?? Number.NaN) - (base.latency?.p99Ms ?? Number.NaN), 2),
    },
  });
  const extraColumns = {
    replicaPct: '% on replicas',
    delayedPct: `% on ${delayed.name}`,
    stale: 'stale',
    extraP50Ms: 'extra p50 ms',
    extraP99Ms: 'extra p99 ms',
    waitsPerWindow: 'waits/window',
    fallbacksPerWindow: 'fallbacks/window',
  };
  const sessionBase = rowFor('session, no delay');
  const sessionTable = table(
    `session read-after-write, ${delayed.name} at +${options.delay} ms, c=${options.concurrency}`,
    'reads/s',
    'session, no delay',
    [
      sessionBase,
      withExtraLatency(rowFor('session'), sessionBase),
      withExtraLatency(rowFor("session, 'none' (control)"), sessionBase),
    ],
    { extraColumns },
  );
  const replicaPct = (c: { extra?: Record<string, number> }) => c.extra?.replicaPct;
  target('session reads on replicas under the delay (%)', sessionTable, 'session', replicaPct, '>=', 90);
  target('stale session reads under the delay', sessionTable, 'session', (c) => c.extra?.stale, '<=', 0);
  target('session read p99 extra latency (ms)', sessionTable, 'session', (c) => c.extra?.extraP99Ms, '<=', 22);
  const plainBase = rowFor('plain, no delay');
  const plainTable = table(
    `plain reads (process scope, ${100 * WRITE_SHARE} % updates), ${delayed.name} at +${options.delay} ms, c=${options.concurrency}`,
    'reads/s',
    'plain, no delay',
    [plainBase, withExtraLatency(rowFor('plain'), plainBase)],
    { extraColumns },
  );
  target('stale plain reads under the delay', plainTable, 'plain', (c) => c.extra?.stale, '<=', 0);

  writeResult({
    bench: 'apply-delay',
    title: `Reads with ${delayed.name} applying WAL ${options.delay} ms late (${prompt.name} at once): core router over node-postgres, default options`,
    options: { ...options, rows: ROWS, writeShare: WRITE_SHARE, poolMax: POOL_MAX, postgres: cluster.serverVersion },
    contenders: {
      'session, no delay': 'router.session(): update the loop’s row, then read it; no apply delay anywhere',
      session: `the same with ${delayed.name} at setApplyDelay(${options.delay})`,
      "session, 'none' (control)": "the same on a router with consistency: 'none' (stale reads expected)",
      'plain, no delay': `outside sessions: ${100 * WRITE_SHARE} % updates, reads of ${ROWS} rows; no delay`,
      plain: `the same with ${delayed.name} at setApplyDelay(${options.delay})`,
    },
    tables: [sessionTable, plainTable],
    notes: [
      'Throughput and CPU count reads only in the session tables’ throughput column; CPU µs/q is over every operation of the window (updates too).',
      `The serving node of every read is inet_server_port(); extra p50/p99 = the read's percentile with the delay − without it.`,
    ],
  });
} finally {
  await delayed.setApplyDelay(0).catch(() => {});
  for (const router of routers) await router.close().catch(() => {});
  for (const node of nodes) await node.end().catch(() => {});
  await cluster.stop();
}
