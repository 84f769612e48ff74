// What routing costs a read, without any database: router.read() over fake nodes whose reads
// resolve at once, against calling the same async function directly. Both loops run in one process,
// interleaved over several rounds; the result is the median difference per read, in nanoseconds.
//   node --conditions=lagless-source --import tsx bench/core-read-overhead.ts
import { writeFileSync } from 'node:fs';
import { createRouter, type RouterNode } from '@lagless/core';

const READS = 200_000;
const ROUNDS = 7;

function fakeNode(name: string, recovery: boolean): RouterNode<string> {
  const row = recovery
    ? { id: '1', recovery: true, replay: '0/1000' }
    : { id: '1', lsn: '0/1000', block: '8192', recovery: false };
  return { name, client: name, query: async () => [row] };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  const results: Record<string, unknown>[] = [];
  for (const balancer of ['least-connections', 'latency', 'round-robin'] as const) {
    for (const replicas of [2, 8]) {
      const router = createRouter<string>({
        primary: fakeNode('primary', false),
        replicas: Array.from({ length: replicas }, (_, i) => fakeNode(`r${i}`, true)),
        balancer,
        probeIntervalMs: 0,
      });
      await router.ready();
      const work = async (client: string): Promise<string> => client;
      const direct: number[] = [];
      const routed: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        let t = process.hrtime.bigint();
        for (let i = 0; i < READS; i++) await work('r0');
        direct.push(Number(process.hrtime.bigint() - t) / READS);
        t = process.hrtime.bigint();
        for (let i = 0; i < READS; i++) await router.read(work);
        routed.push(Number(process.hrtime.bigint() - t) / READS);
      }
      await router.close();
      const overheadNs = median(routed.map((r, i) => r - (direct[i] ?? 0)));
      results.push({ balancer, replicas, directNs: median(direct), routedNs: median(routed), overheadNs });
      console.log(
        `${balancer.padEnd(18)} ${String(replicas).padStart(2)} replicas: direct ${median(direct).toFixed(0)} ns, routed ${median(routed).toFixed(0)} ns, overhead ${overheadNs.toFixed(0)} ns/read`,
      );
    }
  }
  writeFileSync(
    new URL('./results/core-read-overhead.json', import.meta.url),
    `${JSON.stringify({ bench: 'core-read-overhead', date: new Date().toISOString(), node: process.version, reads: READS, rounds: ROUNDS, results }, null, 2)}\n`,
  );
}

await main();
