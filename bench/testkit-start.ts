// Start-up time of a 2-replica testkit cluster, per binary provider: the time from startCluster()
// until every replica streams. Runs are interleaved (system, embedded, system, ...) so a noisy
// neighbour on a shared machine hits both providers alike.
//   npm run bench:testkit-start [-- --runs 5 --replicas 2]
import { type BinaryProvider, startCluster } from '@lagless/testkit';
import { benchOptions, median, table, writeResult } from './lib.js';

const { runs, replicas } = benchOptions({ runs: [5, 1], replicas: [2, 2] });
const providers: BinaryProvider[] = ['system', 'embedded'];

const samples = new Map<BinaryProvider, { startMs: number[]; stopMs: number[]; cpuUs: number[]; version: string }>();
// One unmeasured start per provider first: the embedded binaries are copied to a cache on first use.
for (const provider of providers) await (await startCluster({ provider, replicas })).stop();

for (let run = 0; run < runs; run++) {
  for (const provider of providers) {
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    const cluster = await startCluster({ provider, replicas });
    const t1 = performance.now();
    const { user, system } = process.cpuUsage(cpu);
    await cluster.stop();
    const t2 = performance.now();
    const entry = samples.get(provider) ?? { startMs: [], stopMs: [], cpuUs: [], version: cluster.serverVersion };
    entry.cpuUs.push(user + system);
    entry.startMs.push(Math.round(t1 - t0));
    entry.stopMs.push(Math.round(t2 - t1));
    samples.set(provider, entry);
  }
}

for (const [provider, s] of samples) {
  console.log(
    `${provider.padEnd(8)} PostgreSQL ${s.version.padEnd(6)} start median ${median(s.startMs)} ms [${s.startMs.join(', ')}], stop median ${median(s.stopMs)} ms`,
  );
}
writeResult({
  bench: 'testkit-start',
  title: `Start-up of a ${replicas}-replica testkit cluster, from startCluster() until every replica streams, per binary provider (runs interleaved)`,
  options: { runs, replicas },
  contenders: Object.fromEntries([...samples].map(([provider, s]) => [provider, `PostgreSQL ${s.version}`])),
  tables: [
    table(
      'cluster start',
      'starts/s',
      'system',
      [...samples].map(([provider, s]) => ({
        name: provider,
        throughput: 1000 / median(s.startMs),
        cpuUsPerQuery: median(s.cpuUs),
        latency: { p50Ms: median(s.startMs), p99Ms: Math.max(...s.startMs) },
      })),
    ),
  ],
  notes: [
    "CPU µs/query here is the bench process's CPU per start (the servers' own CPU is not counted); p99 is the slowest run.",
  ],
  details: Object.fromEntries(
    [...samples].map(([provider, s]) => [provider, { startMs: s.startMs, medianStopMs: median(s.stopMs) }]),
  ),
});
