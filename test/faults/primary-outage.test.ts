// The primary killed under load: replicas keep serving every read they can (plain reads and
// sessions continuing from a token), writes fail fast, and come back as soon as the primary does.
// Every serving node is named by the server (inet_server_port() in the statement that reads the
// data), never by the router's counters.
import { isLaglessError } from '@lagless/core';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backgroundReaders,
  describeReport,
  forMs,
  type Instance,
  type InstanceOptions,
  ITEMS_TABLE_SQL,
  insertItem,
  instance,
  pick,
  readItem,
  runReaders,
  servedBy,
  sessionRead,
  sleep,
  type Written,
  waitUntil,
  writeWithTokens,
} from './load.js';

const READERS = 8;
const WRITE_BOUND_MS = 1000;

// Fast probes and readmission so the router's view follows the faults within a test's time; the
// pools' connect timeout bounds a write on an unreachable primary (instance() sets 1000 ms).
const ROUTER_OPTIONS: InstanceOptions = {
  probeIntervalMs: 100,
  readmission: { initialMs: 100, maxMs: 1000, jitter: 0 },
  waitTimeoutMs: 200,
  pool: { connectionTimeoutMillis: WRITE_BOUND_MS },
};

let cluster: Cluster;
const instances: Instance[] = [];
let a: Instance;
let b: Instance;
/** Replayed by both replicas before replica1's replay was paused. */
let everywhere: Written[] = [];
/** Replayed by replica2 only: a session carrying one of these tokens must never land on replica1. */
let replica2Only: Written[] = [];

function open(options: InstanceOptions = {}): Instance {
  const opened = instance(cluster, { ...ROUTER_OPTIONS, ...options });
  instances.push(opened);
  return opened;
}

function replica(index: number) {
  const node = cluster.replicas[index];
  if (!node) throw new Error(`replica ${index + 1} expected`);
  return node;
}

// Plain reads carry no requirement; they read rows both replicas replayed, so a missing one would
// mean a node outside the cluster's history served it.
const plainRead = (target: Instance) => (reader: number, iteration: number) =>
  readItem(target, pick(everywhere, reader, iteration).id);

async function ensurePrimaryDown(): Promise<void> {
  if (cluster.primary.state === 'running') await cluster.primary.kill();
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(ITEMS_TABLE_SQL);
  a = open();
  b = open();
  await Promise.all([a.router.ready(), b.router.ready()]);
  everywhere = await writeWithTokens(a, 10, 'everywhere');
  await cluster.waitForReplicas();
  await replica(0).pauseReplay();
  replica2Only = await writeWithTokens(a, 20, 'replica2 only');
  // waitForReplicas skips the paused replica1: replica2 has everything when the primary dies.
  await cluster.waitForReplicas();
  // Without this, a session served by replica1 would look fresh and the stale count prove nothing.
  const ids = replica2Only.map((w) => w.id);
  const [onReplica1] = await replica(0).query<{ n: string }>(
    'SELECT count(*) AS n FROM items WHERE id = ANY($1::int[])',
    [ids],
  );
  expect(Number(onReplica1?.n)).toBe(0);
});

afterAll(async () => {
  await Promise.all(instances.splice(0).map((i) => i.close()));
  await cluster?.stop();
});

describe('primary killed under load', () => {
  it('an instance created before the kill keeps serving plain reads and token sessions from replicas: 0 failed, 0 stale', async () => {
    const plain = backgroundReaders(READERS, plainRead(b));
    const sessions = backgroundReaders(READERS, sessionRead(b, replica2Only));
    await sleep(500);
    const readsBeforeKill = plain.report.reads + sessions.report.reads;
    await cluster.primary.kill();
    // The router must have noticed, else this would only test a primary it still believes in.
    await waitUntil('instance B to see the primary down', () => b.router.stats().primary.state === 'down', 5000);
    const downAt = plain.report.reads + sessions.report.reads;
    await sleep(2000);
    const [plainReport, sessionReport] = await Promise.all([plain.finish(), sessions.finish()]);
    const readsAfterDown = plainReport.reads + sessionReport.reads - downAt;
    console.log(`[outage] instance B plain: ${describeReport(plainReport)}; max ${plainReport.maxMs.toFixed(0)} ms`);
    console.log(
      `[outage] instance B token sessions: ${describeReport(sessionReport)}; max ${sessionReport.maxMs.toFixed(0)} ms; ` +
        `reads before kill ${readsBeforeKill}, after primary seen down ${readsAfterDown}`,
    );

    for (const report of [plainReport, sessionReport]) {
      expect(report.failed, describeReport(report)).toBe(0);
      expect(report.stale, describeReport(report)).toBe(0);
    }
    expect(readsAfterDown).toBeGreaterThan(100);
    // Plain reads: both replicas, the paused one included (it is behind, and nothing asked for more).
    expect(servedBy(plainReport, replica(0).port)).toBeGreaterThan(0);
    expect(servedBy(plainReport, replica(1).port)).toBeGreaterThan(0);
    // Sessions: only the replica that replayed their tokens.
    expect(servedBy(sessionReport, replica(1).port)).toBeGreaterThan(0);
    expect(servedBy(sessionReport, replica(0).port)).toBe(0);
    expect(b.router.stats().tokens.rejected).toBe(0);
  });

  it('a router created during the outage serves plain reads from replicas, and ready() names the primary', async () => {
    await ensurePrimaryDown();
    const c = open();
    // Reads start at once, as an app's first requests would, while ready() is still deciding.
    const [readyError, report] = await Promise.all([
      c.router.ready().then(
        () => undefined,
        (error: unknown) => error,
      ),
      runReaders(READERS, plainRead(c), forMs(1500)),
    ]);
    console.log(
      `[outage] instance C (created during the outage) plain: ${describeReport(report)}; max ${report.maxMs.toFixed(0)} ms; ready(): ${String((readyError as Error | undefined)?.message)}`,
    );

    expect(isLaglessError(readyError)).toBe(true);
    expect(readyError).toMatchObject({ code: 'PRIMARY_UNAVAILABLE' });
    expect((readyError as Error).message).toContain('primary "primary"');
    // Only the primary: both replicas were admitted on the identity they agree on.
    expect((readyError as Error).message).not.toContain('replica');
    expect(report.failed, describeReport(report)).toBe(0);
    expect(report.stale, describeReport(report)).toBe(0);
    expect(servedBy(report, replica(0).port)).toBeGreaterThan(0);
    expect(servedBy(report, replica(1).port)).toBeGreaterThan(0);
  });

  it('a router created during the outage serves token sessions only from the replica that replayed them', async () => {
    await ensurePrimaryDown();
    const c = open();
    const report = await runReaders(READERS, sessionRead(c, replica2Only), forMs(1500));
    console.log(
      `[outage] instance C token sessions: ${describeReport(report)}; max ${report.maxMs.toFixed(0)} ms; tokens ${JSON.stringify(c.router.stats().tokens)}`,
    );

    expect(report.failed, describeReport(report)).toBe(0);
    expect(report.stale, describeReport(report)).toBe(0);
    expect(servedBy(report, replica(1).port)).toBeGreaterThan(0);
    expect(servedBy(report, replica(0).port)).toBe(0);
  });

  it(`writes fail within ${WRITE_BOUND_MS} ms while the primary is down, and work again within ${WRITE_BOUND_MS} ms of its restart`, async () => {
    await ensurePrimaryDown();
    const late = open();
    const failMs: number[] = [];
    const errors: unknown[] = [];
    // Concurrent writers on an instance that knew the primary and on one that never saw it.
    await Promise.all(
      [a, late].flatMap((target) =>
        Array.from({ length: 4 }, async (_, writer) => {
          for (let i = 0; i < 5; i++) {
            const started = performance.now();
            const error = await insertItem(target, `during outage ${writer}.${i}`).then(
              () => undefined,
              (e: unknown) => e,
            );
            failMs.push(performance.now() - started);
            errors.push(error);
          }
        }),
      ),
    );
    const maxFailMs = Math.max(...failMs);

    await cluster.primary.start();
    const resumed = await Promise.all(
      [a, late].map(async (target) => {
        const started = performance.now();
        for (let attempts = 1; ; attempts++) {
          try {
            await insertItem(target, 'after restart');
            return { ms: performance.now() - started, attempts };
          } catch (error) {
            if (performance.now() - started > 10_000) throw error;
            await sleep(10);
          }
        }
      }),
    );
    const resumeMs = resumed.map((r) => r.ms);
    const codes = [...new Set(errors.map((e) => (e as { code?: unknown } | undefined)?.code))];
    console.log(
      `[outage] writes while down: ${errors.filter(Boolean).length}/${errors.length} failed, max ${maxFailMs.toFixed(0)} ms, median ${median(failMs).toFixed(0)} ms, codes ${codes.join(',')}; ` +
        `first write after start() resolved: ${resumed.map((r, i) => `${i === 0 ? 'A' : 'late'} ${r.ms.toFixed(0)} ms (attempt ${r.attempts})`).join(', ')}`,
    );

    expect(errors.every((e) => e !== undefined)).toBe(true);
    // The driver's own error, not one of ours: the app's error handling for a dead database applies.
    expect(errors.some((e) => isLaglessError(e))).toBe(false);
    expect(maxFailMs).toBeLessThan(WRITE_BOUND_MS);
    for (const ms of resumeMs) expect(ms).toBeLessThan(WRITE_BOUND_MS);
  });
});

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
