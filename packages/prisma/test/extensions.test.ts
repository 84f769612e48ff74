// Results through readReplicas() equal the primary's, including fields other $extends add, whichever
// order the extensions are applied in (the official extension loses them on replica reads).
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laglessAdapter, readReplicas } from '../src/index.js';
import { PrismaClient } from './generated/client.js';
import { applySchema, computedLabel } from './helpers.js';

let cluster: Cluster;
const clients: Array<{ $disconnect(): Promise<void> }> = [];

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await applySchema(cluster);
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('ada@x', 'Ada'), ('alan@x', 'Alan')`);
  await cluster.primary.query(`INSERT INTO "Post" (title, "authorId") VALUES ('Notes', 1)`);
  await cluster.waitForReplicas();
  // Replicas frozen in time, then a row only the primary has: a read's row count names its node.
  for (const replica of cluster.replicas) await replica.pauseReplay();
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('grace@x', 'Grace')`);
});

afterAll(async () => {
  for (const client of clients) await client.$disconnect();
  await cluster?.stop();
});

function base() {
  const client = new PrismaClient({
    adapter: laglessAdapter({
      primary: new PrismaPg({ connectionString: cluster.primary.url }),
      replicas: cluster.replicas.map((r) => new PrismaPg({ connectionString: r.url })),
      // A replica whose first probe is slow on a loaded machine must not be ejected: its row count is the evidence.
      probeTimeoutMs: 5000,
    }),
  });
  clients.push(client);
  return client;
}

describe.each([
  ['computed fields applied before readReplicas()', () => base().$extends(computedLabel).$extends(readReplicas())],
  ['computed fields applied after readReplicas()', () => base().$extends(readReplicas()).$extends(computedLabel)],
])('%s', (_name, make) => {
  it('replica results equal the primary’s, computed fields included', async () => {
    const prisma = make();
    const onReplica = await prisma.user.findMany({ orderBy: { id: 'asc' }, include: { posts: true } });
    const unique = await prisma.user.findUnique({ where: { email: 'ada@x' } });
    const onPrimary = await prisma.$primary().user.findMany({ orderBy: { id: 'asc' }, include: { posts: true } });
    // Results are proxies (computed fields are lazy, with a per-result inspect hook): compare their JSON.
    const plain = (users: typeof onPrimary): unknown => JSON.parse(JSON.stringify(users));
    // grace@x exists only on the primary: two rows prove a replica served the read.
    expect(onPrimary).toHaveLength(3);
    expect(plain(onReplica)).toEqual(plain(onPrimary.slice(0, 2)));
    expect(onReplica.map((u) => u.label)).toEqual(['Ada <ada@x>', 'Alan <alan@x>']);
    expect(await prisma.user.findUnique({ where: { email: 'grace@x' } })).toBeNull();
    expect(unique?.label).toBe('Ada <ada@x>');
    expect(onReplica[0]?.posts.map((p) => p.title)).toEqual(['Notes']);
    expect((await prisma.$replica().user.findFirst({ where: { email: 'alan@x' } }))?.label).toBe('Alan <alan@x>');
  });
});
