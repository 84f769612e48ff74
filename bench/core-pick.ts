// Cost of one replica choice, per balancer and candidate count: the hot path of every read.
// Each balancer runs in its own process so that the benchmark's `pick()` call site stays
// monomorphic, as it is in an application with one balancer; otherwise the first balancer measured
// would look faster than the last. Candidates' inFlight changes between picks so the JIT cannot
// fold the choice into a constant.
//   node --import tsx bench/core-pick.ts [--picks 2] [--repeats 5]     (--picks in millions)
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Balancer, type BalancerName, createBalancer, seededRandom } from '../packages/core/src/balancers.js';

const BALANCERS: BalancerName[] = ['least-connections', 'latency', 'round-robin', 'random', 'weighted'];
const COUNTS = [2, 3, 8];

const { values } = parseArgs({
  options: { picks: { type: 'string' }, repeats: { type: 'string' }, child: { type: 'string' } },
});
const picks = Math.round(Number(values.picks ?? 2) * 1_000_000);
const repeats = Number(values.repeats ?? 5);

interface Candidate {
  name: string;
  inFlight: number;
  latencyScoreMs: number;
  weight: number;
}

interface Row {
  balancer: BalancerName;
  candidates: number;
  medianNsPerPick: number;
  nsPerPick: number[];
  /** The same loop with `pick()` replaced by an array read: what the numbers above include besides the choice. */
  loopOverheadNs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const round = (ns: number): number => Math.round(ns * 100) / 100;

let sink = 0;

function makeCandidates(count: number): Candidate[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `replica-${i}`,
    inFlight: i % 3,
    latencyScoreMs: 2 + ((i * 7) % 5),
    weight: 1 + (i % 4),
  }));
}

function timePicks(balancer: Balancer, candidates: Candidate[], n: number): number {
  const count = candidates.length;
  let acc = 0;
  let j = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const c = candidates[j] as Candidate;
    c.inFlight = (c.inFlight + 1) & 3;
    j = j + 1 === count ? 0 : j + 1;
    acc += balancer.pick(candidates).inFlight;
  }
  const elapsed = process.hrtime.bigint() - start;
  sink += acc;
  return Number(elapsed) / n;
}

/** The same loop as timePicks with the choice replaced by an array read; a separate copy so neither call site sees two targets. */
function timeBaseline(candidates: Candidate[], n: number): number {
  const count = candidates.length;
  let acc = 0;
  let j = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const c = candidates[j] as Candidate;
    c.inFlight = (c.inFlight + 1) & 3;
    j = j + 1 === count ? 0 : j + 1;
    acc += (candidates[acc & 1] as Candidate).inFlight;
  }
  const elapsed = process.hrtime.bigint() - start;
  sink += acc;
  return Number(elapsed) / n;
}

function runChild(name: BalancerName): Row[] {
  const rows: Row[] = [];
  for (const count of COUNTS) {
    const balancer = createBalancer(name, seededRandom(1));
    const candidates = makeCandidates(count);
    timePicks(balancer, candidates, 1_000_000);
    timeBaseline(candidates, 1_000_000);
    const nsPerPick: number[] = [];
    const overhead: number[] = [];
    for (let r = 0; r < repeats; r++) {
      nsPerPick.push(timePicks(balancer, candidates, picks));
      overhead.push(timeBaseline(candidates, picks));
    }
    rows.push({
      balancer: name,
      candidates: count,
      medianNsPerPick: round(median(nsPerPick)),
      nsPerPick: nsPerPick.map(round),
      loopOverheadNs: round(median(overhead)),
    });
  }
  return rows;
}

if (values.child !== undefined) {
  const rows = runChild(values.child as BalancerName);
  process.stdout.write(`${JSON.stringify({ rows, sink: sink % 2 })}\n`);
} else {
  const started = performance.now();
  const rows: Row[] = [];
  for (const name of BALANCERS) {
    const out = execFileSync(
      process.execPath,
      [
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        '--child',
        name,
        '--picks',
        String(picks / 1e6),
        '--repeats',
        String(repeats),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    rows.push(...(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { rows: Row[] }).rows);
  }

  const header = ['balancer', ...COUNTS.map((n) => `${n} cand. ns/pick`)];
  const table = BALANCERS.map((name) => [
    name,
    ...COUNTS.map((n) => {
      const row = rows.find((r) => r.balancer === name && r.candidates === n);
      return row === undefined ? '-' : row.medianNsPerPick.toFixed(1);
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((line) => (line[i] ?? '').length)));
  const format = (line: string[]): string =>
    line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  console.log(format(header));
  for (const line of table) console.log(format(line));
  const overhead = median(rows.map((r) => r.loopOverheadNs));
  console.log(
    `median of ${repeats} runs × ${picks / 1e6}M picks; includes ~${overhead.toFixed(1)} ns of loop and mutation (an array read instead of pick())`,
  );

  const cpu = cpus()[0];
  const result = {
    bench: 'core-pick',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpu?.model ?? 'unknown', node: process.version },
    picksPerRun: picks,
    repeats,
    totalSeconds: Math.round((performance.now() - started) / 100) / 10,
    results: rows,
  };
  writeFileSync(new URL('./results/core-pick.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
}
