// Start-up time of a 2-replica testkit cluster, per binary provider: the time from startCluster()
// until every replica streams. Runs are interleaved (system, embedded, system, ...) so a noisy
// neighbour on a shared machine hits both providers alike.
//   npm run bench:testkit-start [-- --runs 5 --replicas 2]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type BinaryProvider, startCluster } from '@lagless/testkit';

const { values } = parseArgs({ options: { runs: { type: 'string' }, replicas: { type: 'string' } } });
const runs = Number(values.runs ?? 5);
const replicas = Number(values.replicas ?? 2);
const providers: BinaryProvider[] = ['system', 'embedded'];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

const samples = new Map<BinaryProvider, { startMs: number[]; stopMs: number[]; version: string }>();
// One unmeasured start per provider first: the embedded binaries are copied to a cache on first use.
for (const provider of providers) await (await startCluster({ provider, replicas })).stop();

for (let run = 0; run < runs; run++) {
  for (const provider of providers) {
    const t0 = performance.now();
    const cluster = await startCluster({ provider, replicas });
    const t1 = performance.now();
    await cluster.stop();
    const t2 = performance.now();
    const entry = samples.get(provider) ?? { startMs: [], stopMs: [], version: cluster.serverVersion };
    entry.startMs.push(Math.round(t1 - t0));
    entry.stopMs.push(Math.round(t2 - t1));
    samples.set(provider, entry);
  }
}

const result = {
  bench: 'testkit-start',
  date: new Date().toISOString(),
  machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
  replicas,
  runs,
  providers: Object.fromEntries(
    [...samples].map(([provider, s]) => [
      provider,
      { postgres: s.version, medianStartMs: median(s.startMs), startMs: s.startMs, medianStopMs: median(s.stopMs) },
    ]),
  ),
};
for (const [provider, s] of samples) {
  console.log(
    `${provider.padEnd(8)} PostgreSQL ${s.version.padEnd(6)} start median ${median(s.startMs)} ms [${s.startMs.join(', ')}], stop median ${median(s.stopMs)} ms`,
  );
}
writeFileSync(new URL('./results/testkit-start.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
