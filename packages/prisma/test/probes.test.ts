// Health and lag probes never pass through the application's PrismaClients: on the drop-in path
// they run on a connection of our own, opened from each client's driver adapter factory. The
// clients' query logs, `$on('query')` listeners and query extensions see the application's
// operations only, while lag is still measured and reads still route (named by the server: the
// paused replica lacks the rows written after the pause).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laglessAdapter, readReplicas } from '../src/index.js';
import { PrismaClient } from './generated/client.js';
import { applySchema, eventually } from './helpers.js';

let cluster: Cluster;

beforeAll(async () => {
  // Every statement in each server's log: the probes can be counted where they ran.
  cluster = await startCluster({ replicas: 1, settings: { log_statement: 'all' } });
  await applySchema(cluster);
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('ada@x', 'Ada')`);
  await cluster.waitForReplicas();
});

afterAll(() => cluster?.stop());

/** What one application client reports of the queries it ran. */
function watchedClient(url: string) {
  const seen = { events: [] as string[], extension: [] as string[] };
  const client = new PrismaClient({
    adapter: new PrismaPg({ connectionString: url }),
    log: [{ emit: 'event', level: 'query' }],
  });
  client.$on('query', (event) => seen.events.push(event.query));
  const extended = client.$extends({
    query: {
      $allOperations({ operation, args, query }) {
        seen.extension.push(operation);
        return query(args);
      },
    },
  });
  return { client, extended, seen };
}

/** Statements of the replay probe a server logged since `offset` (bytes into its log). */
function replayProbesLogged(node: string, offset: number): number {
  if (cluster.dir === undefined) return Number.NaN;
  const text = readFileSync(join(cluster.dir, `${node}.log`), 'utf8').slice(offset);
  return text.split('\n').filter((line) => line.includes('statement:') && line.includes('pg_last_wal_replay_lsn()'))
    .length;
}

function logSize(node: string): number {
  return cluster.dir === undefined ? 0 : statSync(join(cluster.dir, `${node}.log`)).size;
}

describe('drop-in probes', () => {
  it('leave no trace in the clients’ query events and extensions, and still measure lag', async () => {
    const replicaNode = cluster.replicas[0];
    if (!replicaNode) throw new Error('one replica expected');
    const primary = watchedClient(cluster.primary.url);
    const replica = watchedClient(replicaNode.url);
    const logOffset = logSize(replicaNode.name);
    const prisma = primary.extended.$extends(
      readReplicas({ replicas: [replica.extended], probeIntervalMs: 100, probeTimeoutMs: 5000 }),
    );
    try {
      await prisma.$lagless.ready();
      const lagOf = () => prisma.$lagless.stats().replicas[0];
      // Lag is measured: behind after a write while replay is paused, caught up after it resumes,
      // behind again. Each change needs fresh probes of both nodes, several intervals in all.
      await replicaNode.pauseReplay();
      await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('grace@x', 'Grace')`);
      await eventually(() => (lagOf()?.lagBytes ?? 0) > 0);
      await replicaNode.resumeReplay();
      await cluster.waitForReplicas();
      await eventually(() => lagOf()?.lagBytes === 0);
      await replicaNode.pauseReplay();
      await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('alan@x', 'Alan')`);
      await eventually(() => (lagOf()?.lagBytes ?? 0) > 0);
      if (cluster.dir !== undefined) {
        // The replica's server ran the replay probe on every interval (the figures are the server's).
        expect(replayProbesLogged(replicaNode.name, logOffset)).toBeGreaterThanOrEqual(3);
      }
      // Not one of them reached either application client.
      expect({ primary: primary.seen, replica: replica.seen }).toEqual({
        primary: { events: [], extension: [] },
        replica: { events: [], extension: [] },
      });

      // Reads still route to the replica (it has 2 of the 3 users) and the clients see just them.
      expect(await prisma.user.count()).toBe(2);
      expect(replica.seen.extension).toEqual(['count']);
      expect(replica.seen.events).toHaveLength(1);
      expect(replica.seen.events[0]).toMatch(/"User"/);
      // The primary client's own extension was applied before ours, so its hook runs first and sees
      // the application's count; no SQL ran through that client.
      expect(primary.seen).toEqual({ events: [], extension: ['count'] });
      expect(await prisma.$primary().user.count()).toBe(3);
      expect(primary.seen.extension).toEqual(['count', 'count']);
      expect(primary.seen.events).toHaveLength(1);
    } finally {
      await prisma.$disconnect();
      await replicaNode.resumeReplay();
    }
  });

  it('fast path: probes run on the nodes’ driver adapters, below the client’s query log', async () => {
    const replicaNode = cluster.replicas[0];
    if (!replicaNode) throw new Error('one replica expected');
    const events: string[] = [];
    const client = new PrismaClient({
      adapter: laglessAdapter({
        primary: new PrismaPg({ connectionString: cluster.primary.url }),
        replicas: [new PrismaPg({ connectionString: replicaNode.url })],
        probeIntervalMs: 100,
        probeTimeoutMs: 5000,
      }),
      log: [{ emit: 'event', level: 'query' }],
    });
    client.$on('query', (event) => events.push(event.query));
    const prisma = client.$extends(readReplicas());
    try {
      await prisma.$lagless.ready();
      const rows = Number((await cluster.primary.query<{ n: number }>('SELECT count(*)::int AS n FROM "User"'))[0]?.n);
      await cluster.waitForReplicas();
      await replicaNode.pauseReplay();
      await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('fast@x', 'Fast')`);
      await eventually(() => (prisma.$lagless.stats().replicas[0]?.lagBytes ?? 0) > 0);
      expect(events).toEqual([]);
      // The replica, paused before the insert, serves the read; the client logs that one statement.
      expect(await prisma.user.count()).toBe(rows);
      expect(events).toHaveLength(1);
    } finally {
      await prisma.$disconnect();
      await replicaNode.resumeReplay();
    }
  });
});
