// Monotonic reads, checked against a counter that a writer outside any router keeps incrementing.
// replica1 applies each transaction 60 ms late, replica2 at once: a session whose consecutive reads
// land on replica2 then replica1 sees the counter go down unless the router prevents it. The
// round-robin balancer makes consecutive reads alternate replicas (the worst case); the default
// balancer is what most users run. Each run has a twin with `consistency: 'none'` that must catch
// regressions, so a zero can only mean the router prevented them.
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  emptyReport,
  type Instance,
  type InstanceOptions,
  instance,
  type LoadReport,
  waitUntil,
} from '../faults/load.js';
import {
  byNode,
  COUNTER_SQL,
  type CounterRead,
  type CounterWriter,
  checkSessions,
  ms,
  POOL,
  percentile,
  readCounter,
  replicaShare,
  type SessionRunOptions,
  startCounterWriter,
} from './checks.js';

const APPLY_DELAY_MS = 60;
// Think time between a session's reads: without it, least-connections at saturation sends each
// reader's next read back to the replica that just freed a slot, and sessions rarely switch replicas.
const RUN: SessionRunOptions = { readers: 16, readsPerSession: 5, minReads: 5000, capMs: 12_000, thinkMs: 2 };
const PAIRS = 1000;
/** Enough for the control: without tokens about one pair in four regresses. */
const CONTROL_PAIRS = 500;
const CHAIN_HOPS = 5;
const CHAINS = 8;

let cluster: Cluster;
let writer: CounterWriter;
const instances: Instance[] = [];

function open(options: InstanceOptions = {}): Instance {
  // A 5 s probe bound: on a machine loaded by other test files, a 1 s probe can time out, and a token
  // whose reads no probe could bound counts as `unbounded` (a limit, not what this checks).
  const app = instance(cluster, { pool: POOL, probeTimeoutMs: 5000, ...options });
  instances.push(app);
  return app;
}

async function counterOn(index: number): Promise<number> {
  const node = cluster.replicas[index];
  if (!node) throw new Error(`replica ${index + 1} expected`);
  const [row] = await node.query<{ n: number }>('SELECT n FROM counter WHERE id = 1');
  return Number(row?.n);
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  for (const statement of COUNTER_SQL) await cluster.primary.query(statement);
  await cluster.waitForReplicas();
  await cluster.replicas[0]?.setApplyDelay(APPLY_DELAY_MS);
  writer = await startCounterWriter(cluster);
  // The runs mean something only once the delayed replica trails the other one.
  await waitUntil('replica1 to trail replica2', async () => {
    // Side by side: one admin query opens a connection, long enough for the delayed replica to catch up.
    const [delayed, live] = await Promise.all([counterOn(0), counterOn(1)]);
    return live > delayed + 10;
  });
});

afterAll(async () => {
  await writer?.stop().catch(() => {});
  for (const app of instances) await app.close();
  await cluster?.stop();
});

const balancers = [
  { label: 'round-robin', options: { balancer: 'round-robin' } },
  { label: 'the default balancer', options: {} },
] as const satisfies ReadonlyArray<{ label: string; options: InstanceOptions }>;

describe.each(balancers)('sessions that only read, with $label', ({ label, options }) => {
  it('0 regressions over 5 000 session reads, at least 80 % served by replicas', async () => {
    const app = open(options);
    await app.router.ready();
    const before = await writer.value();
    const report = await checkSessions(app, RUN);
    const summary =
      `[monotonic ${label}] ${report.reads} reads in ${report.sessions} sessions, ${report.stale} regressions, ` +
      `${report.failed} failed, ${byNode(report, cluster)}, read p50 ${ms(percentile(report.latencies, 50))} ` +
      `p99 ${ms(percentile(report.latencies, 99))} max ${ms(report.maxMs)}, ` +
      `counter +${(await writer.value()) - before} meanwhile; ${report.samples.join('; ')} ${report.errors.join(' | ')}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.reads, summary).toBeGreaterThanOrEqual(RUN.minReads);
    expect(report.stale, summary).toBe(0);
    expect(replicaShare(report, cluster), summary).toBeGreaterThanOrEqual(0.8);
  });

  it("the same run with consistency: 'none' counts regressions (the checker can fail)", async () => {
    const app = open({ ...options, consistency: 'none' });
    await app.router.ready();
    const before = await writer.value();
    const report = await checkSessions(app, RUN);
    const summary =
      `[monotonic ${label}, consistency none] ${report.reads} reads in ${report.sessions} sessions, ` +
      `${report.stale} regressions, ${report.failed} failed, ${byNode(report, cluster)}, ` +
      `counter +${(await writer.value()) - before} meanwhile; ${report.samples.join('; ')}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.reads, summary).toBeGreaterThanOrEqual(RUN.minReads);
    expect(report.stale, summary).toBeGreaterThan(0);
  });
});

/** Per-hop reads (`reads`, `byPort`), with `stale` counting regressions between consecutive hops. */
interface ChainReport extends LoadReport {
  pairs: number;
  /** Hops whose session handed back no token. */
  noToken: number;
  samples: string[];
}

/**
 * Chains of read-only sessions alternating between two instances: each hop reads the counter in a
 * session that continues from the previous hop's token, then takes its own token. A hop that reads a
 * smaller value than the hop before it is a regression. With `carry: false` each hop starts a fresh
 * session instead: the control.
 */
async function runChains(a: Instance, b: Instance, pairs: number, carry: boolean): Promise<ChainReport> {
  const report: ChainReport = { ...emptyReport(), pairs: 0, noToken: 0, samples: [] };
  let planned = 0;
  await Promise.all(
    Array.from({ length: CHAINS }, async () => {
      while (planned < pairs) {
        planned += CHAIN_HOPS - 1;
        let previous: CounterRead | undefined;
        let token: string | undefined;
        for (let hop = 0; hop < CHAIN_HOPS; hop++) {
          const app = hop % 2 === 0 ? a : b;
          try {
            const result = await app.router.session(carry && token !== undefined ? { token } : {}, async () => {
              const seen = await readCounter(app);
              return { seen, token: await app.router.token() };
            });
            report.reads++;
            report.byPort.set(result.seen.port, (report.byPort.get(result.seen.port) ?? 0) + 1);
            if (result.token === undefined) report.noToken++;
            if (previous) {
              report.pairs++;
              if (result.seen.n < previous.n) {
                report.stale++;
                if (report.samples.length < 5) {
                  report.samples.push(
                    `hop ${hop}: ${previous.n}@${previous.port} then ${result.seen.n}@${result.seen.port}`,
                  );
                }
              }
            }
            previous = result.seen;
            token = result.token;
          } catch (error) {
            report.failed++;
            if (report.errors.length < 5) report.errors.push(String((error as Error)?.message ?? error));
            break;
          }
        }
      }
    }),
  );
  return report;
}

function describeChains(report: ChainReport): string {
  return (
    `${report.pairs} pairs, ${report.stale} regressions, ${report.failed} failed, ` +
    `${report.noToken} of ${report.reads} hops handed back no token, ${byNode(report, cluster)}; ` +
    `${report.samples.join('; ')} ${report.errors.join(' | ')}`
  );
}

describe('tokens carry reads across instances', () => {
  it('1 000 read → token() → session({ token }) pairs between two instances: 0 regressions', async () => {
    const a = open({ balancer: 'round-robin' });
    const b = open({ balancer: 'round-robin' });
    await Promise.all([a.router.ready(), b.router.ready()]);
    const report = await runChains(a, b, PAIRS, true);
    // Router-side counts, to tell a regression from an overloaded machine's unbounded tokens.
    const routers = [a, b].map((app) =>
      JSON.stringify({ ...app.router.stats().tokens, reads: app.router.stats().reads }),
    );
    const summary = `[token chains] ${describeChains(report)} routers ${routers.join(' ')}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.pairs, summary).toBeGreaterThanOrEqual(PAIRS);
    expect(report.stale, summary).toBe(0);
  });

  it('the same chains without passing the token count regressions (the checker can fail)', async () => {
    const a = open({ balancer: 'round-robin' });
    const b = open({ balancer: 'round-robin' });
    await Promise.all([a.router.ready(), b.router.ready()]);
    const report = await runChains(a, b, CONTROL_PAIRS, false);
    const summary = `[token chains, no token passed] ${describeChains(report)}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.pairs, summary).toBeGreaterThanOrEqual(CONTROL_PAIRS);
    expect(report.stale, summary).toBeGreaterThan(0);
  });
});
