// The drop-in path: readReplicas({ replicas: PrismaClient[] }), as @prisma/extension-read-replicas
// takes them. Replicas are paused, then grace@x is written: a read that misses it ran on a replica.
import { isLaglessError } from '@lagless/core';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicas } from '../src/index.js';
import { applySchema, bareClient, computedLabel } from './helpers.js';

let cluster: Cluster;
const clients: Array<{ $disconnect(): Promise<void> }> = [];

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await applySchema(cluster);
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('ada@x', 'Ada'), ('alan@x', 'Alan')`);
  await cluster.waitForReplicas();
  for (const replica of cluster.replicas) await replica.pauseReplay();
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('grace@x', 'Grace')`);
});

afterAll(async () => {
  for (const client of clients) await client.$disconnect();
  await cluster?.stop();
});

function dropIn(options: Parameters<typeof readReplicas>[0] = {}) {
  const replicas = cluster.replicas.map((r) => bareClient(r.url));
  // A generous probe timeout: a fresh client's first probe connects too, and CI machines are shared.
  const prisma = bareClient(cluster.primary.url).$extends(
    readReplicas({ replicas, probeIntervalMs: 100, probeTimeoutMs: 5000, ...options }),
  );
  clients.push(prisma);
  return prisma;
}

describe('drop-in path', () => {
  it('routes reads to replicas and writes to the primary', async () => {
    const prisma = dropIn();
    for (let i = 0; i < 8; i++) {
      expect(await prisma.user.count()).toBe(2);
      expect(await prisma.user.findUnique({ where: { email: 'grace@x' } })).toBeNull();
    }
    expect(await prisma.$primary().user.count()).toBe(3);
    const [row] = await prisma.$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`;
    expect(row?.port).toBe(cluster.primary.port);
    // A write routed to a paused replica would fail (read-only transaction).
    await prisma.user.create({ data: { email: 'drop@x', name: 'd' } });
    expect(await prisma.$replica().user.count()).toBe(2);
    await prisma.$transaction(async (tx) => {
      expect(await tx.user.count()).toBe(4);
      expect(() => tx.$replica()).toThrow(/inside a transaction/);
    });
  });

  it('reads its writes inside a session (served by the primary while replicas are paused)', async () => {
    const prisma = dropIn({ waitTimeoutMs: 50 });
    await prisma.$lagless.session(async () => {
      const user = await prisma.user.create({ data: { email: 'sess@x', name: 's' } });
      expect(await prisma.user.findUnique({ where: { id: user.id } })).not.toBeNull();
    });
    expect(prisma.$lagless.stats().reads.fallbacks).toBeGreaterThan(0);
  });

  it("reads after a $transaction see its writes, in a session or not; with consistency: 'none' they do not", async () => {
    const prisma = dropIn({ waitTimeoutMs: 50 });
    await prisma.$lagless.session(async () => {
      const user = await prisma.$transaction(async (tx) => tx.user.create({ data: { email: 'tx@x', name: 't' } }));
      expect(await prisma.user.findUnique({ where: { id: user.id } })).not.toBeNull();
      const [batched] = await prisma.$transaction([prisma.user.create({ data: { email: 'btx@x', name: 'b' } })]);
      expect(await prisma.user.findUnique({ where: { id: batched.id } })).not.toBeNull();
    });
    // Outside a session, the process's own writes count by default.
    const outside = await prisma.$transaction(async (tx) => tx.user.create({ data: { email: 'otx@x', name: 'o' } }));
    expect(await prisma.user.findUnique({ where: { id: outside.id } })).not.toBeNull();
    // Replicas are paused: with no guarantee, the same read goes to one and misses the row.
    const unsafe = dropIn({ consistency: 'none' });
    const missed = await unsafe.$transaction(async (tx) => tx.user.create({ data: { email: 'ntx@x', name: 'n' } }));
    expect(await unsafe.user.findUnique({ where: { id: missed.id } })).toBeNull();
  });

  it('a token taken right after a $transaction carries it to another instance', async () => {
    const prisma = dropIn({ waitTimeoutMs: 50 });
    const { id, token } = await prisma.$lagless.session(async () => {
      const user = await prisma.$transaction(async (tx) => tx.user.create({ data: { email: 'tok@x', name: 't' } }));
      return { id: user.id, token: await prisma.$lagless.token() };
    });
    expect(typeof token).toBe('string');
    // Another instance, which wrote nothing: only the token can keep its read off the paused replicas.
    const other = dropIn({ waitTimeoutMs: 50 });
    expect(await other.$lagless.session({ token }, () => other.user.findUnique({ where: { id } }))).not.toBeNull();
    expect(await other.user.findUnique({ where: { id } })).toBeNull();
  });

  it('passes $queryRawUnsafe / $executeRawUnsafe arguments to a replica client as the caller gave them', async () => {
    const replicaPorts = cluster.replicas.map((r) => r.port);
    for (const prisma of [dropIn(), dropIn({ rawQueries: 'replica' })]) {
      const [row] = await prisma
        .$replica()
        .$queryRawUnsafe<Array<{ id: number; port: number }>>('SELECT $1::int AS id, inet_server_port() AS port', 7);
      expect(row?.id).toBe(7);
      expect(replicaPorts).toContain(row?.port);
      expect(await prisma.$replica().$executeRawUnsafe('SELECT $1::int', 1)).toBe(1);
    }
    const [routed] = await dropIn({ rawQueries: 'replica' }).$queryRawUnsafe<Array<{ port: number }>>(
      'SELECT inet_server_port() AS port WHERE $1::int = 1',
      1,
    );
    expect(replicaPorts).toContain(routed?.port);
  });

  it('keeps computed fields of an extension applied after readReplicas()', async () => {
    const prisma = dropIn().$extends(computedLabel);
    const users = await prisma.user.findMany({ orderBy: { id: 'asc' } });
    expect(users.map((u) => u.label)).toEqual(['Ada <ada@x>', 'Alan <alan@x>']);
  });

  it('rejects bad input with typed errors', () => {
    expect(() => bareClient(cluster.primary.url).$extends(readReplicas({ replicas: [{} as never] }))).toThrow(
      /Invalid option replicas\[0\]: expected a PrismaClient, received \{\}/,
    );
    try {
      bareClient(cluster.primary.url).$extends(readReplicas());
      expect.unreachable();
    } catch (error) {
      expect(isLaglessError(error, 'INVALID_OPTION')).toBe(true);
    }
  });
});
