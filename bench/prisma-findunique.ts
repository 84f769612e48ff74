// findUnique and findFirst by primary key through Prisma 7 (@prisma/adapter-pg), in one run:
//   bare             one PrismaClient on replica 0 alone (the reference of the table)
//   two-bare         two bare PrismaClients, one per replica, alternated by hand (same topology as the others)
//   official         @prisma/extension-read-replicas 0.5 (random replica)
//   lagless          @lagless/prisma fast path: one client, routing driver adapter (least-connections)
//   lagless-latency  the same with balancer 'latency'
//   lagless-dropin   @lagless/prisma drop-in path: readReplicas({ replicas: PrismaClient[] })
// at concurrency 1 (per-query time) and 32 (throughput, p99), with both replicas healthy and then
// with replica 1 slowed by +5 ms through the fault proxy. Rounds are interleaved (every contender
// once per round, in rotating order) so drift on a shared machine hits all alike; figures are medians,
// with client CPU µs per query. Targets (issue 11), healthy findUnique at c=32: lagless ≥ 0.9× bare
// throughput, ≤ 1.1× bare CPU per query. Needs the generated Prisma client (`npm run generate`).
//   node --conditions=lagless-source --import tsx bench/prisma-findunique.ts [-- --rounds 5 --seconds 1]
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { createFaultProxy, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas as officialReadReplicas } from '@prisma/extension-read-replicas';
import { PrismaClient } from '../packages/prisma/test/generated/client.js';
import {
  benchOptions,
  interleavedTable,
  measure,
  type ResultTable,
  round,
  seedUsers,
  target,
  type Window,
  writeResult,
} from './lib.js';

const { rounds, seconds, rows } = benchOptions({ rounds: [5, 2], seconds: [1, 0.25], rows: [10_000, 10_000] });
const SLOW_MS = 5;
const CONCURRENCIES = [1, 32] as const;
const OPERATIONS = ['findUnique', 'findFirst'] as const;
type Operation = (typeof OPERATIONS)[number];

interface UserReader {
  user: {
    findUnique(args: { where: { id: number } }): PromiseLike<{ id: number } | null>;
    findFirst(args: { where: { id: number } }): PromiseLike<{ id: number } | null>;
  };
}

const disconnects: Array<() => Promise<unknown>> = [];
// Pools larger than the highest concurrency, so no contender queues on its own pool.
const pgAdapter = (url: string) => new PrismaPg({ connectionString: url, max: 40 });
function bareClient(url: string): PrismaClient {
  const client = new PrismaClient({ adapter: pgAdapter(url) });
  disconnects.push(() => client.$disconnect());
  return client;
}

/** Reads by random id on `concurrency` loops for `ms`: a window of lib.ts's measure(). */
function run(pick: () => UserReader, operation: Operation, concurrency: number, ms: number): Promise<Window> {
  return measure(concurrency, ms, async (record) => {
    const id = 1 + Math.floor(Math.random() * rows);
    const row = await record.time('read', () => pick().user[operation]({ where: { id } }));
    if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
  });
}

const cluster = await startCluster({ replicas: 2 });
const proxy = await createFaultProxy({ target: cluster.replicas[1]?.url ?? '', latencyMs: 0 });
try {
  await seedUsers(cluster, rows);
  const [fast, slowed] = cluster.replicas;
  if (!fast || !slowed) throw new Error('two replicas expected');
  // Replica 1 is always reached through the proxy, so its extra hop is there in both scenarios.
  const replicaUrls = [fast.url, proxy.url(slowed.url)] as const;

  const twoBare = [bareClient(replicaUrls[0]), bareClient(replicaUrls[1])];
  let turn = 0;
  const official = bareClient(cluster.primary.url).$extends(
    officialReadReplicas({ replicas: [bareClient(replicaUrls[0]), bareClient(replicaUrls[1])] as never }),
  );
  const fastPath = (balancer: 'least-connections' | 'latency') => {
    const adapter = laglessAdapter({
      primary: pgAdapter(cluster.primary.url),
      replicas: replicaUrls.map(pgAdapter),
      balancer,
    });
    const client = new PrismaClient({ adapter }).$extends(readReplicas());
    disconnects.push(() => client.$disconnect());
    return client;
  };
  const lagless = fastPath('least-connections');
  const laglessLatency = fastPath('latency');
  const dropIn = bareClient(cluster.primary.url).$extends(
    readReplicas({ replicas: [bareClient(replicaUrls[0]), bareClient(replicaUrls[1])] }),
  );
  disconnects.push(() => dropIn.$disconnect());
  const bare = bareClient(fast.url);

  const contenders: Record<string, () => UserReader> = {
    bare: () => bare,
    'two-bare': () => twoBare[turn++ % 2] as PrismaClient,
    official: () => official as unknown as UserReader,
    lagless: () => lagless,
    'lagless-latency': () => laglessLatency,
    'lagless-dropin': () => dropIn,
  };
  const names = Object.keys(contenders);
  await Promise.all([
    lagless.$lagless.router.ready(),
    laglessLatency.$lagless.router.ready(),
    dropIn.$lagless.router.ready(),
  ]);
  // Unmeasured: JIT, connections, the table in shared buffers on both replicas.
  for (const name of names) await run(contenders[name] as () => UserReader, 'findUnique', 32, 1000);

  const tables: ResultTable[] = [];
  const opsByRound: Record<string, Record<string, number[]>> = {};
  for (const scenario of ['healthy', `replica-1 +${SLOW_MS} ms`]) {
    proxy.setLatency(scenario === 'healthy' ? 0 : SLOW_MS);
    for (const operation of OPERATIONS) {
      for (const concurrency of CONCURRENCIES) {
        const title = `${scenario}, ${operation}, c=${concurrency}`;
        for (const name of names) await run(contenders[name] as () => UserReader, operation, concurrency, 300);
        const t = await interleavedTable(
          title,
          'reads/s',
          'bare',
          names,
          rounds,
          (name) => run(contenders[name] as () => UserReader, operation, concurrency, seconds * 1000),
          'read',
          opsByRound,
        );
        if (scenario === 'healthy' && operation === 'findUnique' && concurrency === 32) {
          target('lagless fast path throughput vs bare', t, 'lagless', (c) => c.ratios.throughput, '>=', 0.9);
          target('lagless fast path CPU per query vs bare', t, 'lagless', (c) => c.ratios.cpu ?? undefined, '<=', 1.1);
        }
        tables.push(t);
      }
    }
  }

  const vsOfficial = Object.fromEntries(
    tables.map((t) => {
      const of = (name: string) => t.contenders.find((c) => c.name === name)?.throughput ?? Number.NaN;
      return [t.title, round(of('lagless') / of('official'), 3)];
    }),
  );
  writeResult({
    bench: 'prisma-findunique',
    title: `Prisma 7 findUnique / findFirst by primary key, ${rows} rows, 2 replicas (replica 1 behind the fault proxy), healthy and with replica 1 +${SLOW_MS} ms`,
    options: { rounds, seconds, rows, slowedReplicaMs: SLOW_MS, postgres: cluster.serverVersion },
    contenders: {
      bare: 'PrismaClient on replica 0 alone',
      'two-bare': 'two PrismaClients, one per replica, alternated by hand',
      official: '@prisma/extension-read-replicas 0.5',
      lagless: '@lagless/prisma fast path (laglessAdapter + readReplicas()), least-connections',
      'lagless-latency': "@lagless/prisma fast path, balancer 'latency'",
      'lagless-dropin': '@lagless/prisma drop-in path (readReplicas({ replicas: PrismaClient[] }))',
    },
    tables,
    details: { laglessVsOfficialThroughput: vsOfficial, readsPerSecByRound: opsByRound },
  });
} finally {
  await Promise.all(disconnects.map((disconnect) => disconnect().catch(() => {})));
  await proxy.close();
  await cluster.stop();
}
