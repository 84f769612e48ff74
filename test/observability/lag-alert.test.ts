// The lag alert on a real cluster: with replay paused on one replica while the primary keeps taking
// writes, its lag grows past lagAlertMs and a `lag` event says it is behind; once replay resumes,
// another says it recovered. The other replica, replaying all along, raises nothing, and the lag
// history in stats() tells the two apart. The paused replica really is behind: its server has
// fewer rows than the primary's while the alert stands.
import type { RouterEvents } from '@lagless/core';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Instance, ITEMS_TABLE_SQL, insertItem, instance, sleep, waitUntil } from '../faults/load.js';

const LAG_ALERT_MS = 300;

let cluster: Cluster;
let app: Instance;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(ITEMS_TABLE_SQL);
  await cluster.waitForReplicas();
  app = instance(cluster, { probeIntervalMs: 50, lagAlertMs: LAG_ALERT_MS });
  await app.router.ready();
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

/** Rows in `items` on one server, asked of that server directly. */
const rowsOn = async (node: Pick<Cluster['primary'], 'query'>): Promise<number> => {
  const [row] = await node.query<{ n: number }>('SELECT count(*)::int AS n FROM items');
  return Number(row?.n);
};

describe('lagAlertMs', () => {
  it("raises 'behind' when paused replay takes a replica past it, and 'recovered' when it catches up", async () => {
    const [steady, paused] = cluster.replicas;
    if (!steady || !paused) throw new Error('two replicas expected');
    const events: RouterEvents['lag'][] = [];
    app.router.on('lag', (event) => events.push(event));
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await insertItem(app, `tick ${i}`);
        await sleep(20);
      }
    })();
    try {
      await paused.pauseReplay();
      await waitUntil('a lag event', () => events.length > 0);
      expect(events[0]).toMatchObject({ replica: paused.name, state: 'behind', thresholdMs: LAG_ALERT_MS });
      expect(events[0]?.lagMs).toBeGreaterThanOrEqual(LAG_ALERT_MS);
      expect(events[0]?.lagBytes).toBeGreaterThan(0);
      // The server agrees: the paused replica is missing rows the primary and the other replica have.
      await waitUntil('the steady replica to have what the primary had', async () => {
        const before = await rowsOn(cluster.primary);
        return (await rowsOn(steady)) >= before;
      });
      expect(await rowsOn(paused)).toBeLessThan(await rowsOn(cluster.primary));

      const stats = app.router.stats().replicas;
      const lagging = stats.find((replica) => replica.name === paused.name)?.lagHistory;
      const healthy = stats.find((replica) => replica.name === steady.name)?.lagHistory;
      expect(lagging?.samples).toBeGreaterThan(0);
      expect(lagging?.p99Ms).toBeGreaterThanOrEqual(LAG_ALERT_MS);
      expect(healthy?.samples).toBeGreaterThan(0);
      expect(healthy?.p99Ms).toBeLessThan(LAG_ALERT_MS);

      await paused.resumeReplay();
      await waitUntil('a recovered event', () => events.length > 1);
      expect(events[1]).toMatchObject({ replica: paused.name, state: 'recovered', thresholdMs: LAG_ALERT_MS });
      expect(events[1]?.lagMs).toBeLessThanOrEqual(LAG_ALERT_MS / 2);
    } finally {
      await paused.resumeReplay().catch(() => {});
      writing = false;
      await writer;
    }
    // One each way, and nothing about the replica that kept replaying.
    expect(events.map((event) => [event.replica, event.state])).toEqual([
      [paused.name, 'behind'],
      [paused.name, 'recovered'],
    ]);
    // The history still remembers the episode after the recovery.
    const lagging = app.router.stats().replicas.find((replica) => replica.name === paused.name)?.lagHistory;
    expect(lagging?.p99Ms).toBeGreaterThanOrEqual(LAG_ALERT_MS);
  });
});
