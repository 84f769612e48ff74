// $disconnect() leaves no connection open on any node, and a disconnected client works again.
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicas } from '../src/index.js';
import { applySchema, bareClient, eventually, fastClient } from './helpers.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await applySchema(cluster);
});

afterAll(() => cluster?.stop());

const CLIENTS_SQL = `SELECT count(*)::int AS n FROM pg_stat_activity
  WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`;

/** Client connections on each node, as each server counts them (the testkit's own admin connection excluded). */
async function connections(): Promise<number[]> {
  const nodes = [cluster.primary, ...cluster.replicas];
  return Promise.all(nodes.map(async (node) => Number((await node.query<{ n: number }>(CLIENTS_SQL))[0]?.n)));
}

/** A backend leaves pg_stat_activity shortly after its client closed the socket. */
async function settled(idle: number[]): Promise<void> {
  await eventually(async () => JSON.stringify(await connections()) === JSON.stringify(idle), 3000).catch(() => {});
  expect(await connections()).toEqual(idle);
}

describe('lifecycle', () => {
  it('fast path: $disconnect closes every node’s connections; the client reconnects on use', async () => {
    const idle = await connections();
    const { prisma } = fastClient(cluster);
    await prisma.user.create({ data: { email: 'l@x', name: 'l' } });
    await Promise.all(Array.from({ length: 10 }, () => prisma.user.findMany()));
    await prisma.$lagless.router.ready();
    const busy = await connections();
    expect(busy.every((n, i) => n > (idle[i] ?? 0))).toBe(true);
    await prisma.$disconnect();
    await settled(idle);
    expect(await prisma.user.count()).toBeGreaterThanOrEqual(0);
    await prisma.$disconnect();
    await settled(idle);
  });

  it('$lagless is the one handle: ready(), stats(), and `await using` closes the router', async () => {
    const { prisma } = fastClient(cluster);
    try {
      {
        await using lagless = prisma.$lagless;
        await lagless.ready();
        await prisma.user.count();
        expect(lagless.stats().replicas.map((r) => r.state)).toEqual(['up', 'up']);
      }
      await expect(prisma.user.count()).rejects.toThrow(/this router was closed/);
    } finally {
      await prisma.$disconnect();
    }
  });

  it('drop-in path: $disconnect closes the primary and replica clients', async () => {
    const idle = await connections();
    const replicas = cluster.replicas.map((r) => bareClient(r.url));
    const prisma = bareClient(cluster.primary.url).$extends(readReplicas({ replicas }));
    await prisma.$connect();
    await Promise.all(Array.from({ length: 6 }, () => prisma.user.findMany()));
    await prisma.$lagless.router.ready();
    await prisma.$disconnect();
    await settled(idle);
  });

  it('drop-in path: probes use connections of their own, which $lagless.close() closes', async () => {
    const idle = await connections();
    const replicas = cluster.replicas.map((r) => bareClient(r.url));
    const prisma = bareClient(cluster.primary.url).$extends(readReplicas({ replicas }));
    try {
      // No query ran through any client: what is open now is the router's probe connections.
      await prisma.$lagless.ready();
      const probing = await connections();
      expect(probing.every((n, i) => n > (idle[i] ?? 0))).toBe(true);
      await prisma.$lagless.close();
      await settled(idle);
    } finally {
      await prisma.$disconnect();
    }
  });
});
