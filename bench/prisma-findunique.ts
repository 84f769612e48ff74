// findUnique and findFirst by primary key through Prisma 7 (@prisma/adapter-pg), in one run:
//   bare             one PrismaClient on replica 0 alone (the reference of the issue's table)
//   two-bare         two bare PrismaClients, one per replica, alternated by hand (same topology as the others)
//   official         @prisma/extension-read-replicas 0.5 (random replica)
//   lagless          @lagless/prisma fast path: one client, routing driver adapter (least-connections)
//   lagless-latency  the same with balancer 'latency'
//   lagless-dropin   @lagless/prisma drop-in path: readReplicas({ replicas: PrismaClient[] })
// at concurrency 1 (per-query time) and 32 (throughput, p99), with both replicas healthy and then
// with replica 1 slowed by +5 ms through the fault proxy. Rounds are interleaved (every contender
// once per round, in rotating order) so drift on a shared machine hits all alike; figures are medians.
//   node --conditions=lagless-source --import tsx bench/prisma-findunique.ts [-- --rounds 5 --seconds 1]
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { createFaultProxy, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas as officialReadReplicas } from '@prisma/extension-read-replicas';
import { PrismaClient } from '../packages/prisma/test/generated/client.js';
import { seedUsers } from './lib.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string' }, seconds: { type: 'string' }, rows: { type: 'string' } },
});
const rounds = Number(values.rounds ?? 5);
const seconds = Number(values.seconds ?? 1);
const rows = Number(values.rows ?? 10_000);
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

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

const disconnects: Array<() => Promise<unknown>> = [];
// Pools larger than the highest concurrency, so no contender queues on its own pool.
const pgAdapter = (url: string) => new PrismaPg({ connectionString: url, max: 40 });
function bareClient(url: string): PrismaClient {
  const client = new PrismaClient({ adapter: pgAdapter(url) });
  disconnects.push(() => client.$disconnect());
  return client;
}

/** Reads by random id on `concurrency` loops for `ms`; returns reads per second and the p99 in ms. */
async function measure(
  pick: () => UserReader,
  operation: Operation,
  concurrency: number,
  ms: number,
): Promise<{ ops: number; p99Ms: number }> {
  const deadline = performance.now() + ms;
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const id = 1 + Math.floor(Math.random() * rows);
        const started = performance.now();
        const row = await pick().user[operation]({ where: { id } });
        latencies.push(performance.now() - started);
        if (row?.id !== id) throw new Error(`read ${id}, got ${row?.id}`);
      }
    }),
  );
  return { ops: latencies.length / (ms / 1000), p99Ms: percentile(latencies, 99) };
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
  for (const name of names) await measure(contenders[name] as () => UserReader, 'findUnique', 32, 1000);

  type Cell = { medianOps: number; medianMsPerQuery: number; medianP99Ms: number; ops: number[] };
  const results: Record<string, Record<string, Record<string, Cell>>> = {};
  for (const scenario of ['healthy', `replica-1 +${SLOW_MS} ms`]) {
    proxy.setLatency(scenario === 'healthy' ? 0 : SLOW_MS);
    results[scenario] = {};
    for (const operation of OPERATIONS) {
      for (const concurrency of CONCURRENCIES) {
        const samples = new Map<string, { ops: number[]; p99: number[] }>(names.map((n) => [n, { ops: [], p99: [] }]));
        for (const name of names) await measure(contenders[name] as () => UserReader, operation, concurrency, 300);
        for (let round = 0; round < rounds; round++) {
          const order = names.map((_, i) => names[(i + round) % names.length] as string);
          for (const name of order) {
            const { ops, p99Ms } = await measure(
              contenders[name] as () => UserReader,
              operation,
              concurrency,
              seconds * 1000,
            );
            samples.get(name)?.ops.push(ops);
            samples.get(name)?.p99.push(p99Ms);
          }
        }
        const row: Record<string, Cell> = {};
        for (const [name, { ops, p99 }] of samples) {
          const medianOps = median(ops);
          row[name] = {
            medianOps: Math.round(medianOps),
            // At concurrency 1, time per query is the inverse of throughput.
            medianMsPerQuery: +((1000 * concurrency) / medianOps).toFixed(3),
            medianP99Ms: +median(p99).toFixed(2),
            ops: ops.map(Math.round),
          };
        }
        results[scenario][`${operation} c=${concurrency}`] = row;
        const ratio = (a: string, b: string) => ((row[a]?.medianOps ?? 0) / (row[b]?.medianOps ?? 1)).toFixed(2);
        console.log(
          `${scenario.padEnd(16)} ${operation.padEnd(10)} c=${String(concurrency).padEnd(3)} ${names
            .map((name) => `${name} ${row[name]?.medianOps}/s p99 ${row[name]?.medianP99Ms}ms`)
            .join(
              '  ',
            )}  | lagless/official ${ratio('lagless', 'official')}  lagless/two-bare ${ratio('lagless', 'two-bare')}`,
        );
      }
    }
  }

  const ratios: Record<string, Record<string, Record<string, number>>> = {};
  for (const [scenario, cells] of Object.entries(results)) {
    ratios[scenario] = {};
    for (const [cell, row] of Object.entries(cells)) {
      const of = (name: string) => row[name]?.medianOps ?? Number.NaN;
      const p99 = (name: string) => row[name]?.medianP99Ms ?? Number.NaN;
      ratios[scenario][cell] = {
        'official/bare': +(of('official') / of('bare')).toFixed(3),
        'two-bare/bare': +(of('two-bare') / of('bare')).toFixed(3),
        'lagless/bare': +(of('lagless') / of('bare')).toFixed(3),
        'lagless/official': +(of('lagless') / of('official')).toFixed(3),
        'lagless/two-bare': +(of('lagless') / of('two-bare')).toFixed(3),
        'lagless-latency/official': +(of('lagless-latency') / of('official')).toFixed(3),
        'lagless-dropin/official': +(of('lagless-dropin') / of('official')).toFixed(3),
        'p99 lagless/official': +(p99('lagless') / p99('official')).toFixed(3),
        'p99 lagless-latency/official': +(p99('lagless-latency') / p99('official')).toFixed(3),
      };
    }
  }
  const result = {
    bench: 'prisma-findunique',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    postgres: cluster.serverVersion,
    rows,
    rounds,
    secondsPerRound: seconds,
    slowedReplicaMs: SLOW_MS,
    contenders: {
      bare: 'PrismaClient on replica 0 alone',
      'two-bare': 'two PrismaClients, one per replica, alternated by hand',
      official: '@prisma/extension-read-replicas 0.5',
      lagless: '@lagless/prisma fast path (laglessAdapter + readReplicas()), least-connections',
      'lagless-latency': "@lagless/prisma fast path, balancer 'latency'",
      'lagless-dropin': '@lagless/prisma drop-in path (readReplicas({ replicas: PrismaClient[] }))',
    },
    ratios,
    results,
  };
  writeFileSync(new URL('./results/prisma.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  await Promise.all(disconnects.map((disconnect) => disconnect().catch(() => {})));
  await proxy.close();
  await cluster.stop();
}
