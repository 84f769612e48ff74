// stats() means the same through Prisma (fast path and drop-in) as through Drizzle: the same steps
// leave the same counters. The replica's replay is paused, so which node served each read is
// decided by the data it returns (the row a write added is missing on the replica), not by the
// counters under test.
import type { RouterStats } from '@lagless/core';
import { withReplicas } from '@lagless/drizzle';
import { type Cluster, startCluster } from '@lagless/testkit';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, serial, text } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicas } from '../src/index.js';
import { applySchema, bareClient, fastClient } from './helpers.js';

const users = pgTable('User', {
  id: serial('id').primaryKey(),
  email: text('email').notNull(),
  name: text('name').notNull(),
});

let cluster: Cluster;
let seq = 0;
const email = (path: string) => `${path}-${seq++}@stats`;
const teardown: Array<() => Promise<unknown>> = [];
// Reads that need the replica to replay a write wait this long for it (it never will), then go to the primary.
const ROUTER = { probeIntervalMs: 100, probeTimeoutMs: 5000, waitTimeoutMs: 50 } as const;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 1 });
  await applySchema(cluster);
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('seed@stats', 'seed')`);
  await cluster.waitForReplicas();
  await cluster.replicas[0]?.pauseReplay();
});

afterAll(async () => {
  for (const close of teardown) await close();
  await cluster?.stop();
});

/** One adapter, driven through the same steps; each step returns what it read, so the node that served it shows. */
interface Subject {
  stats(): RouterStats;
  ready(): Promise<void>;
  /** How many users with this email a plain read sees. */
  read(email: string): Promise<number>;
  write(email: string): Promise<void>;
  transaction(email: string): Promise<void>;
}

function prismaSubject(prisma: ReturnType<typeof fastPath> | ReturnType<typeof dropIn>): Subject {
  return {
    stats: () => prisma.$lagless.stats(),
    ready: () => prisma.$lagless.ready(),
    read: (address) => prisma.user.count({ where: { email: address } }),
    write: async (address) => {
      await prisma.user.create({ data: { email: address, name: 'w' } });
    },
    transaction: async (address) => {
      await prisma.$transaction(async (tx) => tx.user.create({ data: { email: address, name: 't' } }));
    },
  };
}

function fastPath() {
  const { prisma } = fastClient(cluster, ROUTER);
  teardown.push(() => prisma.$disconnect());
  return prisma;
}

function dropIn() {
  const replicas = cluster.replicas.map((r) => bareClient(r.url));
  const prisma = bareClient(cluster.primary.url).$extends(readReplicas({ replicas, ...ROUTER }));
  teardown.push(() => prisma.$disconnect());
  return prisma;
}

const subjects: Record<string, () => Subject> = {
  'prisma fast path': () => prismaSubject(fastPath()),
  'prisma drop-in': () => prismaSubject(dropIn()),
  drizzle: () => {
    const pools = [cluster.primary, ...cluster.replicas].map((node) => new pg.Pool({ connectionString: node.url }));
    const [primary, ...replicas] = pools.map((pool) => drizzle(pool));
    if (!primary) throw new Error('no primary');
    const db = withReplicas(primary, replicas, ROUTER);
    teardown.push(async () => {
      await db.$lagless.close();
      await Promise.all(pools.map((pool) => pool.end()));
    });
    return {
      stats: () => db.$lagless.stats(),
      ready: () => db.$lagless.ready(),
      read: async (address) => db.$count(users, eq(users.email, address)),
      write: async (address) => {
        await db.insert(users).values({ email: address, name: 'w' });
      },
      transaction: async (address) => {
        await db.transaction(async (tx) => {
          await tx.insert(users).values({ email: address, name: 't' });
        });
      },
    };
  },
};

/** The counters a step can move, as one comparable object. */
function counters(stats: RouterStats) {
  const { replica, primary, waits, fallbacks, retries } = stats.reads;
  return {
    primaryServed: stats.primary.served,
    primaryInFlight: stats.primary.inFlight,
    replicaServed: stats.replicas.map((r) => r.served),
    replicaFailed: stats.replicas.map((r) => r.failed),
    reads: { replica, primary, waits, fallbacks, retries },
    writes: stats.writes,
  };
}

describe('stats() through every adapter', () => {
  it('the same steps leave the same counters through Prisma (both paths) and Drizzle', async () => {
    const seen: Record<string, Array<ReturnType<typeof counters>>> = {};
    for (const [path, make] of Object.entries(subjects)) {
      const subject = make();
      await subject.ready();
      const steps: Array<ReturnType<typeof counters>> = [];
      const step = () => steps.push(counters(subject.stats()));
      const written = email(path);
      const inTransaction = email(path);
      // A read with nothing to wait for: the paused replica serves it and cannot see rows added now.
      await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('${written}', 'x')`);
      expect(await subject.read(written)).toBe(0);
      step();
      await subject.write(email(path));
      step();
      // Reads after this process's own write need the replica to replay it: it cannot, so the primary serves.
      expect(await subject.read(written)).toBe(1);
      step();
      await subject.transaction(inTransaction);
      expect(await subject.read(inTransaction)).toBe(1);
      step();
      seen[path] = steps;
    }
    const expected = [
      { primaryServed: 0, reads: { replica: 1, primary: 0, fallbacks: 0 }, writes: 0, replicaServed: [1] },
      { primaryServed: 1, reads: { replica: 1, primary: 0, fallbacks: 0 }, writes: 1, replicaServed: [1] },
      { primaryServed: 2, reads: { replica: 1, primary: 1, fallbacks: 1 }, writes: 1, replicaServed: [1] },
      { primaryServed: 4, reads: { replica: 1, primary: 2, fallbacks: 2 }, writes: 2, replicaServed: [1] },
    ];
    for (const steps of Object.values(seen)) expect(steps).toMatchObject(expected);
    expect(seen['prisma fast path']).toEqual(seen.drizzle);
    expect(seen['prisma drop-in']).toEqual(seen.drizzle);
  });

  it('through Prisma, a read $primary() forces counts as a primary read, not a fallback', async () => {
    for (const prisma of [fastPath(), dropIn()]) {
      await prisma.$lagless.ready();
      const address = email('forced');
      // Only the primary has this row: the paused replica would count 0.
      await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('${address}', 'x')`);
      expect(await prisma.$primary().user.count({ where: { email: address } })).toBe(1);
      expect(counters(prisma.$lagless.stats())).toMatchObject({
        primaryServed: 1,
        reads: { replica: 0, primary: 1, fallbacks: 0 },
        writes: 0,
      });
    }
  });
});
