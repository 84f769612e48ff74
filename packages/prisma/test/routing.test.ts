// The routing table, entry by entry. Each node is identified by what the server returns: replica 0
// is paused before marker-r1 is written and replica 1 before marker-p, so the number of markers a
// read sees names the node that served it (1: replica 0, 2: replica 1, 3: the primary).
import { isLaglessError } from '@lagless/core';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySchema, fastClient } from './helpers.js';

let cluster: Cluster;
let client: ReturnType<typeof fastClient>;
let prisma: ReturnType<typeof fastClient>['prisma'];

const MARKERS = { where: { email: { startsWith: 'marker-' } } } as const;
const SEEN_BY = { 1: 'replica-0', 2: 'replica-1', 3: 'primary' } as Record<number, string>;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await applySchema(cluster);
  const [r0, r1] = cluster.replicas;
  if (!r0 || !r1) throw new Error('two replicas expected');
  // Each pause point also adds a post to marker-all: the post count names the node too.
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('marker-all', 'all')`);
  await cluster.primary.query(`INSERT INTO "Post" (title, "authorId") VALUES ('post-all', 1)`);
  await cluster.waitForReplicas();
  await r0.pauseReplay();
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('marker-r1', 'r1')`);
  await cluster.primary.query(`INSERT INTO "Post" (title, "authorId") VALUES ('post-r1', 1)`);
  await r1.waitForReplay(await cluster.primary.currentWalLsn());
  await r1.pauseReplay();
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('marker-p', 'p')`);
  await cluster.primary.query(`INSERT INTO "Post" (title, "authorId") VALUES ('post-p', 1)`);
  // Round-robin: these tests expect sequential reads to reach both replicas, which least-connections
  // no longer promises when one replica answers clearly faster than the other.
  client = fastClient(cluster, { balancer: 'round-robin' });
  prisma = client.prisma;
});

afterAll(async () => {
  await prisma?.$disconnect();
  await cluster?.stop();
});

/** The nodes that served `times` runs of `read`, named by the marker count each returned. */
async function servedBy(read: () => Promise<number>, times = 12): Promise<Set<string>> {
  const nodes = new Set<string>();
  for (let i = 0; i < times; i++) nodes.add(SEEN_BY[await read()] ?? `unexpected ${i}`);
  return nodes;
}

const replicasOnly = (nodes: Set<string>) => expect([...nodes].sort()).toEqual(['replica-0', 'replica-1']);

describe('reads go to replicas', () => {
  it('findMany', async () => replicasOnly(await servedBy(async () => (await prisma.user.findMany(MARKERS)).length)));
  it('findFirst', async () =>
    replicasOnly(
      await servedBy(async () => {
        const last = await prisma.user.findFirst({ ...MARKERS, orderBy: { id: 'desc' } });
        return { 'marker-all': 1, 'marker-r1': 2, 'marker-p': 3 }[last?.email ?? ''] ?? 0;
      }),
    ));
  it('findFirstOrThrow', async () =>
    replicasOnly(
      await servedBy(async () => {
        const last = await prisma.user.findFirstOrThrow({ ...MARKERS, orderBy: { id: 'desc' } });
        return { 'marker-all': 1, 'marker-r1': 2, 'marker-p': 3 }[last.email] ?? 0;
      }),
    ));
  it('findUnique', async () =>
    replicasOnly(
      await servedBy(async () => {
        const [r1, p] = await Promise.all([
          prisma.user.findUnique({ where: { email: 'marker-r1' } }),
          prisma.user.findUnique({ where: { email: 'marker-p' } }),
        ]);
        return 1 + (r1 ? 1 : 0) + (p ? 1 : 0);
      }),
    ));
  it('findUniqueOrThrow', async () => {
    const nodes = await servedBy(async () => {
      const found = await prisma.user.findUniqueOrThrow({ where: { email: 'marker-r1' } }).then(
        () => 2,
        () => 1,
      );
      return found;
    });
    replicasOnly(nodes);
    // marker-p exists only on the primary: on a replica the call must throw.
    await expect(prisma.user.findUniqueOrThrow({ where: { email: 'marker-p' } })).rejects.toThrow();
  });
  it('count', async () => replicasOnly(await servedBy(() => prisma.user.count(MARKERS))));
  it('aggregate', async () =>
    replicasOnly(await servedBy(async () => (await prisma.user.aggregate({ ...MARKERS, _count: true }))._count)));
  it('groupBy', async () =>
    replicasOnly(
      await servedBy(async () => {
        const groups = await prisma.user.groupBy({ by: ['email'], ...MARKERS });
        return groups.length;
      }),
    ));
  it('findMany with include keeps all its statements on one node', async () => {
    // Users and posts come from separate statements ('query' strategy): the number of users and the
    // number of marker-all's posts name a node each, and must name the same one.
    const nodes = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const users = await prisma.user.findMany({
        ...MARKERS,
        relationLoadStrategy: 'query',
        include: { posts: true },
        orderBy: { id: 'asc' },
      });
      const posts = users[0]?.posts.length ?? 0;
      expect(posts).toBe(users.length);
      nodes.add(SEEN_BY[users.length] ?? 'unexpected');
    }
    replicasOnly(nodes);
  });
});

describe('everything else goes to the primary', () => {
  // A write routed to a paused replica would fail: "cannot execute INSERT in a read-only transaction".
  it('create, update, upsert, delete, createMany, updateMany, deleteMany', async () => {
    const user = await prisma.user.create({ data: { email: 'w1@x', name: 'w' } });
    await prisma.user.update({ where: { id: user.id }, data: { name: 'w2' } });
    await prisma.user.upsert({ where: { email: 'w2@x' }, create: { email: 'w2@x', name: 'u' }, update: {} });
    await prisma.user.createMany({ data: [{ email: 'w3@x', name: 'm' }] });
    await prisma.user.updateMany({ where: { email: { startsWith: 'w' } }, data: { name: 'all' } });
    await prisma.post.create({ data: { title: 't', authorId: user.id } });
    await prisma.post.deleteMany({ where: { authorId: user.id } });
    await prisma.user.delete({ where: { id: user.id } });
    expect(await prisma.$primary().user.count({ where: { email: { startsWith: 'w' } } })).toBe(2);
  });
  it('createManyAndReturn reads its own rows back on the primary', async () => {
    const rows = await prisma.user.createManyAndReturn({ data: [{ email: 'cmr@x', name: 'c' }] });
    expect(rows.map((r) => r.email)).toEqual(['cmr@x']);
  });
  it('$queryRaw and $queryRawUnsafe', async () => {
    const [row] = await prisma.$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`;
    expect(row?.port).toBe(cluster.primary.port);
    const [unsafe] = await prisma.$queryRawUnsafe<Array<{ port: number }>>('SELECT inet_server_port() AS port');
    expect(unsafe?.port).toBe(cluster.primary.port);
  });
  it('$executeRaw', async () => {
    expect(await prisma.$executeRaw`UPDATE "User" SET name = 'raw' WHERE email = 'cmr@x'`).toBe(1);
    expect(await prisma.$executeRawUnsafe(`UPDATE "User" SET name = 'raw2' WHERE email = 'cmr@x'`)).toBe(1);
  });
  it('interactive $transaction, reads included', async () => {
    const seen = await prisma.$transaction(async (tx) => {
      const [row] = await tx.$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`;
      return { port: row?.port, markers: await tx.user.count(MARKERS), many: (await tx.user.findMany(MARKERS)).length };
    });
    expect(seen).toEqual({ port: cluster.primary.port, markers: 3, many: 3 });
  });
  it('batch $transaction, reads included', async () => {
    const [count, many, unique] = await prisma.$transaction([
      prisma.user.count(MARKERS),
      prisma.user.findMany(MARKERS),
      prisma.user.findUnique({ where: { email: 'marker-p' } }),
    ]);
    expect([count, many.length, unique?.email]).toEqual([3, 3, 'marker-p']);
  });
  it('$primary() forces reads to the primary', async () => {
    expect(await servedBy(() => prisma.$primary().user.count(MARKERS))).toEqual(new Set(['primary']));
    const [a, b] = await Promise.all([
      prisma.$primary().user.findUnique({ where: { email: 'marker-p' } }),
      prisma.$primary().user.findUnique({ where: { email: 'marker-r1' } }),
    ]);
    expect([a?.email, b?.email]).toEqual(['marker-p', 'marker-r1']);
  });
  it('$primary() inside a transaction is the transaction', async () => {
    await prisma.$transaction(async (tx) => {
      await tx.user.create({ data: { email: 'in-tx@x', name: 't' } });
      // Uncommitted: only the transaction itself can see it.
      expect(await tx.$primary().user.count({ where: { email: 'in-tx@x' } })).toBe(1);
    });
  });
});

describe('$replica()', () => {
  it('forces reads to a replica', async () => {
    replicasOnly(await servedBy(() => prisma.$replica().user.count(MARKERS)));
    const [row] = await prisma.$replica().$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`;
    expect(cluster.replicas.map((r) => r.port)).toContain(row?.port);
  });
  it('throws inside a transaction', async () => {
    await prisma.$transaction(async (tx) => {
      let caught: unknown;
      try {
        tx.$replica();
      } catch (error) {
        caught = error;
      }
      expect(isLaglessError(caught, 'IN_TRANSACTION')).toBe(true);
      expect(String(caught)).toMatch(/inside a transaction/);
    });
  });
});

describe('raw queries on replicas when asked', () => {
  it('rawQueries: "replica" sends $queryRaw to a replica and $executeRaw to the primary', async () => {
    const replicaRaw = fastClient(cluster, {}, { rawQueries: 'replica' });
    const fallbacks: unknown[] = [];
    replicaRaw.adapter.router.on('fallback', (event) => fallbacks.push(event));
    replicaRaw.adapter.router.on('retry', (event) => fallbacks.push(event));
    try {
      const ports = new Set<number>();
      for (let i = 0; i < 8; i++) {
        const [row] = await replicaRaw.prisma.$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`;
        ports.add(Number(row?.port));
      }
      const replicaPorts = cluster.replicas.map((r) => r.port);
      expect({ primary: [...ports].filter((port) => !replicaPorts.includes(port)), fallbacks }).toEqual({
        primary: [],
        fallbacks: [],
      });
      expect(await replicaRaw.prisma.$executeRaw`UPDATE "User" SET name = 'r' WHERE email = 'cmr@x'`).toBe(1);
    } finally {
      await replicaRaw.prisma.$disconnect();
    }
  });
});
