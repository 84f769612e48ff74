// Zones: replica1 is in the app's zone 'a', replica2 in zone 'b'. Reads stay in the zone while its
// replica is healthy, cross to the other zone without a failure when it is killed, and come back
// once it is readmitted. Who served each read is the server's word (inet_server_port()).
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backgroundReaders,
  forMs,
  type Instance,
  ITEMS_TABLE_SQL,
  instance,
  type LoadReport,
  readItem,
  runReaders,
  servedBy,
  sleep,
  waitUntil,
} from '../faults/load.js';
import { byNode, POOL } from './checks.js';

const READERS = 8;
const WINDOW_MS = 1000;
const IN_ZONE = 0.99;

let cluster: Cluster;
let app: Instance;
let rowId: number;

function replica(index: number) {
  const node = cluster.replicas[index];
  if (!node) throw new Error(`replica ${index + 1} expected`);
  return node;
}

const read = () => readItem(app, rowId);
const share = (report: LoadReport, port: number) => (report.reads === 0 ? 0 : servedBy(report, port) / report.reads);
const stateOf = (name: string) => app.router.stats().replicas.find((r) => r.name === name)?.state;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(ITEMS_TABLE_SQL);
  const [row] = await cluster.primary.query<{ id: number }>("INSERT INTO items (note) VALUES ('zoned') RETURNING id");
  rowId = Number(row?.id);
  await cluster.waitForReplicas();
  app = instance(cluster, {
    zones: ['a', 'b'],
    zone: 'a',
    pool: POOL,
    probeIntervalMs: 100,
    readmission: { initialMs: 100, maxMs: 500, jitter: 0 },
  });
  await app.router.ready();
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

describe("zones: replica1 in the app's zone 'a', replica2 in zone 'b'", () => {
  it('stays in the zone, moves out without failures when its replica is killed, and comes back', async () => {
    const local = replica(0);
    const remote = replica(1);

    const healthy = await runReaders(READERS, read, forMs(WINDOW_MS));
    const byZoneHealthy = { ...app.router.stats().reads.byZone };

    // Killed under load: the reads caught on it must be retried elsewhere, not fail.
    const acrossKill = backgroundReaders(READERS, read);
    await sleep(300);
    await local.kill();
    await waitUntil('the router to eject replica1', () => stateOf(local.name) !== 'up');
    const killed = await acrossKill.finish();
    const down = await runReaders(READERS, read, forMs(WINDOW_MS));

    // Restarted under load too: readmission must not cost a read either.
    const acrossRestart = backgroundReaders(READERS, read);
    await local.start();
    await waitUntil('the router to readmit replica1', () => stateOf(local.name) === 'up');
    const restarted = await acrossRestart.finish();
    const back = await runReaders(READERS, read, forMs(WINDOW_MS));

    const summary =
      `[zones] healthy: ${byNode(healthy, cluster)}, ${healthy.failed} failed, stats byZone ${JSON.stringify(byZoneHealthy)}; ` +
      `across the kill: ${byNode(killed, cluster)}, ${killed.failed} failed; ` +
      `down: ${byNode(down, cluster)}, ${down.failed} failed; ` +
      `across the restart: ${byNode(restarted, cluster)}, ${restarted.failed} failed; ` +
      `back: ${byNode(back, cluster)}, ${back.failed} failed, stats byZone ${JSON.stringify(app.router.stats().reads.byZone)}; ` +
      `${[healthy, killed, down, restarted, back].flatMap((report) => report.errors).join(' | ')}`;
    console.log(summary);

    for (const report of [healthy, killed, down, restarted, back]) {
      expect(report.failed, summary).toBe(0);
      expect(report.stale, summary).toBe(0);
      expect(report.reads, summary).toBeGreaterThan(0);
    }
    expect(share(healthy, local.port), summary).toBeGreaterThanOrEqual(IN_ZONE);
    expect(share(down, remote.port), summary).toBeGreaterThanOrEqual(IN_ZONE);
    expect(share(back, local.port), summary).toBeGreaterThanOrEqual(IN_ZONE);
  });
});
