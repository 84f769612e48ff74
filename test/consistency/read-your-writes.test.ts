// Read-your-writes in sessions, with replica1 applying each transaction 60 ms late: a session's read
// right after its write that replica1 serves misses the row unless the router sends it elsewhere or
// waits. The price is measured against a plain read made side by side, by the same worker at the
// same moment, through an instance that requires nothing.
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeReport,
  type Instance,
  type InstanceOptions,
  ITEMS_TABLE_SQL,
  insertItem,
  instance,
  readItem,
  runReaders,
} from '../faults/load.js';
import { byNode, exactly, ms, POOL, percentile, replicaShare } from './checks.js';

const APPLY_DELAY_MS = 60;
const READERS = 8;
const PAIRS = 1000;
const CONTROL_PAIRS = 100;

let cluster: Cluster;
const instances: Instance[] = [];

function open(options: InstanceOptions = {}): Instance {
  const app = instance(cluster, { pool: POOL, ...options });
  instances.push(app);
  return app;
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(ITEMS_TABLE_SQL);
  await cluster.waitForReplicas();
  await cluster.replicas[0]?.setApplyDelay(APPLY_DELAY_MS);
});

afterAll(async () => {
  for (const app of instances) await app.close();
  await cluster?.stop();
});

describe('session read-your-writes, replica1 applying 60 ms late', () => {
  it('1 000 write → read pairs in sessions: 0 misses, at least 50 % served by replicas', async () => {
    const app = open();
    // consistency 'none': the baseline read must carry no requirement whatever the defaults become.
    const plain = open({ consistency: 'none' });
    await Promise.all([app.router.ready(), plain.router.ready()]);
    const sessionMs: number[] = [];
    const plainMs: number[] = [];
    const extraMs: number[] = [];
    const { read, stop } = exactly(PAIRS, async (reader, iteration) => {
      const { seen, id, readMs } = await app.router.session(async () => {
        const { id } = await insertItem(app, `ryw ${reader}.${iteration}`);
        const started = performance.now();
        const seen = await readItem(app, id);
        return { seen, id, readMs: performance.now() - started };
      });
      const started = performance.now();
      await readItem(plain, id);
      const baseline = performance.now() - started;
      sessionMs.push(readMs);
      plainMs.push(baseline);
      extraMs.push(readMs - baseline);
      return seen;
    });
    const report = await runReaders(READERS, read, stop);
    const summary =
      `[session read-your-writes] ${report.reads} pairs, ${report.stale} misses, ${report.failed} failed, ` +
      `session reads ${byNode(report, cluster)}; extra latency p50 ${ms(percentile(extraMs, 50))} ` +
      `p99 ${ms(percentile(extraMs, 99))} (session read p50 ${ms(percentile(sessionMs, 50))} ` +
      `p99 ${ms(percentile(sessionMs, 99))}, plain read p50 ${ms(percentile(plainMs, 50))} ` +
      `p99 ${ms(percentile(plainMs, 99))}); waits ${app.router.stats().reads.waits}, ` +
      `fallbacks ${app.router.stats().reads.fallbacks}; ${report.errors.join(' | ')}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.reads, summary).toBe(PAIRS);
    expect(report.stale, summary).toBe(0);
    expect(replicaShare(report, cluster), summary).toBeGreaterThanOrEqual(0.5);
  });

  it("the same pairs with consistency: 'none' miss (the checker can fail)", async () => {
    const app = open({ consistency: 'none' });
    await app.router.ready();
    const { read, stop } = exactly(CONTROL_PAIRS, (reader, iteration) =>
      app.router.session(async () => {
        const { id } = await insertItem(app, `control ${reader}.${iteration}`);
        return readItem(app, id);
      }),
    );
    const report = await runReaders(READERS, read, stop);
    const summary = `[session read-your-writes, consistency none] ${describeReport(report)}; ${byNode(report, cluster)}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.stale, summary).toBeGreaterThan(0);
  });
});
