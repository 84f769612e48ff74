// Read-your-writes through the fast path, with replica 0's replay paused: a read it serves is stale.
// Every "never stale" assertion has a twin showing the same pattern without a scope does go stale,
// so none of them can pass by accident (e.g. because everything ran on the primary).
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laglessAdapter, readReplicas, type SqlDriverAdapter, type SqlDriverAdapterFactory } from '../src/index.js';
import { PrismaClient } from './generated/client.js';
import { applySchema, fastClient } from './helpers.js';

let cluster: Cluster;
let prisma: ReturnType<typeof fastClient>['prisma'];
/** The same client with `consistency: 'none'`: the controls, which must go stale. */
let unsafe: ReturnType<typeof fastClient>['prisma'];
let seq = 0;
const email = () => `c${seq++}@x`;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await applySchema(cluster);
  await cluster.replicas[0]?.pauseReplay();
  // Round-robin, so the controls below (reads outside a session) really reach the paused replica:
  // least-connections may keep sequential reads on whichever replica answers faster.
  prisma = fastClient(cluster, { balancer: 'round-robin' }).prisma;
  unsafe = fastClient(cluster, { balancer: 'round-robin', consistency: 'none' }).prisma;
  await prisma.$lagless.router.ready();
  await unsafe.$lagless.router.ready();
});

afterAll(async () => {
  await prisma?.$disconnect();
  await unsafe?.$disconnect();
  await cluster?.stop();
});

async function inParallel(workers: number, total: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < total) await job(next++);
    }),
  );
}

describe('session read-after-write', () => {
  it('1 000 create → findUnique pairs in sessions all see the created row', async () => {
    let missing = 0;
    await inParallel(8, 1000, async () => {
      await prisma.$lagless.session(async () => {
        const user = await prisma.user.create({ data: { email: email(), name: 's' } });
        if (!(await prisma.user.findUnique({ where: { id: user.id } }))) missing++;
      });
    });
    expect(missing).toBe(0);
  });

  it('outside a session too, by default: the process reads its own writes', async () => {
    let missing = 0;
    await inParallel(8, 200, async () => {
      const user = await prisma.user.create({ data: { email: email(), name: 'n' } });
      if (!(await prisma.user.findUnique({ where: { id: user.id } }))) missing++;
    });
    expect(missing).toBe(0);
  });

  it("the same pairs with consistency: 'none' observe stale reads", async () => {
    let missing = 0;
    await inParallel(8, 200, async () => {
      const user = await unsafe.user.create({ data: { email: email(), name: 'n' } });
      if (!(await unsafe.user.findUnique({ where: { id: user.id } }))) missing++;
    });
    expect(missing).toBeGreaterThan(0);
  });

  it('interactive and batch transactions raise the token after commit', async () => {
    let missing = 0;
    let staleOutside = 0;
    for (let i = 0; i < 60; i++) {
      await prisma.$lagless.session(async () => {
        const user = await prisma.$transaction(async (tx) => tx.user.create({ data: { email: email(), name: 't' } }));
        if (!(await prisma.user.findUnique({ where: { id: user.id } }))) missing++;
        const [batched] = await prisma.$transaction([prisma.user.create({ data: { email: email(), name: 'b' } })]);
        if (!(await prisma.user.count({ where: { id: batched.id } }))) missing++;
      });
      const outside = await unsafe.$transaction(async (tx) => tx.user.create({ data: { email: email(), name: 'o' } }));
      if (!(await unsafe.user.findUnique({ where: { id: outside.id } }))) staleOutside++;
    }
    expect(missing).toBe(0);
    expect(staleOutside).toBeGreaterThan(0);
  });

  it('a token carries the guarantee into another session', async () => {
    let missing = 0;
    for (let i = 0; i < 40; i++) {
      const { id, token } = await prisma.$lagless.session(async () => {
        const user = await prisma.user.create({ data: { email: email(), name: 'k' } });
        return { id: user.id, token: await prisma.$lagless.token() };
      });
      expect(typeof token).toBe('string');
      const found = await prisma.$lagless.session({ token }, () => prisma.user.findFirst({ where: { id } }));
      if (!found) missing++;
    }
    expect(missing).toBe(0);
  });
});

/** Wraps a driver adapter factory to count the statements it runs. */
function counting(factory: SqlDriverAdapterFactory, counter: { statements: number }): SqlDriverAdapterFactory {
  return {
    provider: factory.provider,
    adapterName: factory.adapterName,
    async connect() {
      const adapter = await factory.connect();
      const wrapped: SqlDriverAdapter = Object.create(adapter);
      wrapped.queryRaw = (query) => {
        // Only the application's statements, not the router's probes.
        if (query.sql.includes('"User"')) counter.statements++;
        return adapter.queryRaw(query);
      };
      return wrapped;
    },
  };
}

describe('merged findUnique batches', () => {
  it('a batch that merges a scoped call with unscoped ones satisfies the scoped call', async () => {
    const counter = { statements: 0 };
    const adapter = laglessAdapter({
      primary: counting(new PrismaPg({ connectionString: cluster.primary.url }), counter),
      replicas: cluster.replicas.map((r) => counting(new PrismaPg({ connectionString: r.url }), counter)),
      probeIntervalMs: 100,
    });
    const client = new PrismaClient({ adapter }).$extends(readReplicas());
    // Writes go through another client (another app instance), so that this one's own process-wide
    // position stays at zero: its unscoped calls carry no requirement, only the scoped one does.
    const writer = prisma;
    const known = await writer.user.create({ data: { email: email(), name: 'known' } });
    await cluster.replicas[1]?.waitForReplay(await cluster.primary.currentWalLsn());
    await adapter.router.ready();
    let staleScoped = 0;
    let staleUnscoped = 0;
    let merged = 0;
    try {
      for (let i = 0; i < 120; i++) {
        const { token, fresh } = await writer.$lagless.session(async () => {
          const user = await writer.user.create({ data: { email: email(), name: 'fresh' } });
          return { token: await writer.$lagless.token(), fresh: user.email };
        });
        let release = () => {};
        const barrier = new Promise<void>((resolve) => {
          release = resolve;
        });
        const unscoped = async (target: string) => {
          await barrier;
          return client.user.findUnique({ where: { email: target } });
        };
        const scoped = client.$lagless.session({ token }, async () => {
          await barrier;
          return client.user.findUnique({ where: { email: fresh } });
        });
        // Scoped call first on even rounds, last on odd ones: the batch runs in the first caller's
        // context, or in none.
        const calls =
          i % 2 === 0
            ? [scoped, unscoped(known.email), unscoped(fresh)]
            : [unscoped(known.email), unscoped(fresh), scoped];
        await new Promise((resolve) => setTimeout(resolve, 2));
        const before = counter.statements;
        release();
        const results = await Promise.all(calls);
        if (counter.statements - before === 1) merged++;
        const scopedResult = i % 2 === 0 ? results[0] : results[2];
        const unscopedFresh = results[1];
        if (!scopedResult) staleScoped++;
        if (!unscopedFresh) staleUnscoped++;
      }
      // The scenario really happened: calls were merged, and the merged statement could go stale.
      expect(merged).toBeGreaterThan(60);
      expect(staleScoped).toBe(0);
      // Unscoped lookups of the same fresh row, run alone in one tick, do go stale: the paused replica serves them.
      for (let i = 0; i < 60; i++) {
        const user = await writer.user.create({ data: { email: email(), name: 'alone' } });
        const [a, b] = await Promise.all([
          client.user.findUnique({ where: { email: user.email } }),
          client.user.findUnique({ where: { email: known.email } }),
        ]);
        if (!a || !b) staleUnscoped++;
      }
      expect(staleUnscoped).toBeGreaterThan(0);
    } finally {
      await client.$disconnect();
    }
  });
});
