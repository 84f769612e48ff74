// What routing costs a read, without any database: router.read() over fake nodes whose reads
// resolve at once, against calling the same async function directly. Both loops run in one process,
// interleaved over several rounds; the result is the median difference per read, in nanoseconds.
//   node --conditions=lagless-source --import tsx bench/core-read-overhead.ts
import { createRouter, type RouterNode } from '@lagless/core';
import {
  benchOptions,
  interleave,
  median,
  type ResultTable,
  type RowInput,
  round,
  rowOf,
  table,
  timed,
  writeResult,
} from './lib.js';

const { reads: READS, rounds: ROUNDS } = benchOptions({ reads: [200_000, 50_000], rounds: [7, 3] });

function fakeNode(name: string, recovery: boolean): RouterNode<string> {
  const row = recovery
    ? { id: '1', recovery: true, replay: '0/1000' }
    : { id: '1', lsn: '0/1000', block: '8192', recovery: false };
  return { name, client: name, query: async () => [row] };
}

const work = async (client: string): Promise<string> => client;
const rows: RowInput[] = [];
const overhead: Record<string, number> = {};
let direct: RowInput | undefined;
for (const balancer of ['least-connections', 'latency', 'round-robin'] as const) {
  for (const replicas of [2, 8]) {
    const router = createRouter<string>({
      primary: fakeNode('primary', false),
      replicas: Array.from({ length: replicas }, (_, i) => fakeNode(`r${i}`, true)),
      balancer,
      probeIntervalMs: 0,
      logger: false,
    });
    await router.ready();
    const name = `${balancer}, ${replicas} replicas`;
    const loops: Record<string, () => Promise<void>> = {
      direct: async () => {
        for (let i = 0; i < READS; i++) await work('r0');
      },
      [name]: async () => {
        for (let i = 0; i < READS; i++) await router.read(work);
      },
    };
    const samples = await interleave(Object.keys(loops), ROUNDS, (loop) =>
      timed(READS, loops[loop] as () => Promise<void>),
    );
    await router.close();
    const routed = samples[name] ?? [];
    const plain = samples.direct ?? [];
    overhead[name] = round(median(routed.map((w, i) => ((w.ms - (plain[i]?.ms ?? 0)) * 1e6) / READS)));
    // One direct row for the table: the first pair's (the loop does not depend on the router).
    direct ??= rowOf('direct', plain);
    rows.push(rowOf(name, routed));
    console.log(`${name}: overhead ${overhead[name]} ns/read`);
  }
}
const results: ResultTable[] = [
  table('router.read() over fake nodes, one read at a time', 'reads/s', 'direct', [direct as RowInput, ...rows]),
];
writeResult({
  bench: 'core-read-overhead',
  title:
    'What routing costs a read without any database: router.read() over fake nodes that answer at once, against calling the same async function directly',
  options: { reads: READS, rounds: ROUNDS },
  contenders: {
    direct: 'the async function called directly',
    '<balancer>, <n> replicas': 'router.read(fn) with that balancer over n fake replicas',
  },
  tables: results,
  details: { overheadNsPerRead: overhead },
});
