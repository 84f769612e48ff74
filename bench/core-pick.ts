// Cost of one replica choice, per balancer and candidate count: the hot path of every read.
// Each balancer runs in its own process so that the benchmark's `pick()` call site stays
// monomorphic, as it is in an application with one balancer; otherwise the first balancer measured
// would look faster than the last. Candidates' inFlight changes between picks so the JIT cannot
// fold the choice into a constant.
//   node --import tsx bench/core-pick.ts [--picks 2] [--repeats 5]     (--picks in millions)
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Balancer, type BalancerName, createBalancer, seededRandom } from '../packages/core/src/balancers.js';
import { benchOptions, median, type ResultTable, table, writeResult } from './lib.js';

const BALANCERS: BalancerName[] = ['least-connections', 'latency', 'round-robin', 'random', 'weighted'];
const COUNTS = [2, 3, 8];

const { values } = parseArgs({ options: { child: { type: 'string' } }, strict: false });
const options = benchOptions({ picks: [2, 0.5], repeats: [5, 3] });
const picks = Math.round(options.picks * 1_000_000);
const repeats = options.repeats;

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
  /** Client CPU (user + system) per pick, median over repeats: the same work as the wall time here. */
  cpuNsPerPick: number;
  /** The same loop with `pick()` replaced by an array read: what the numbers above include besides the choice. */
  loopOverheadNs: number;
}

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
    const cpuNs: number[] = [];
    const overhead: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const cpu = process.cpuUsage();
      nsPerPick.push(timePicks(balancer, candidates, picks));
      const { user, system } = process.cpuUsage(cpu);
      cpuNs.push(((user + system) * 1000) / picks);
      overhead.push(timeBaseline(candidates, picks));
    }
    rows.push({
      balancer: name,
      candidates: count,
      medianNsPerPick: round(median(nsPerPick)),
      nsPerPick: nsPerPick.map(round),
      cpuNsPerPick: round(median(cpuNs)),
      loopOverheadNs: round(median(overhead)),
    });
  }
  return rows;
}

if (values.child !== undefined) {
  const rows = runChild(values.child as BalancerName);
  process.stdout.write(`${JSON.stringify({ rows, sink: sink % 2 })}\n`);
} else {
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

  const overhead = median(rows.map((r) => r.loopOverheadNs));
  console.log(
    `median of ${repeats} runs × ${picks / 1e6}M picks; includes ~${overhead.toFixed(1)} ns of loop and mutation (an array read instead of pick())`,
  );

  const tables: ResultTable[] = COUNTS.map((count) =>
    table(
      `one pick among ${count} candidates`,
      'picks/s',
      'least-connections',
      BALANCERS.map((balancer) => {
        const row = rows.find((r) => r.balancer === balancer && r.candidates === count);
        return {
          name: balancer,
          throughput: row ? 1e9 / row.medianNsPerPick : Number.NaN,
          cpuUsPerQuery: row ? row.cpuNsPerPick / 1000 : Number.NaN,
        };
      }),
    ),
  );
  writeResult({
    bench: 'core-pick',
    title: 'Cost of one replica choice per balancer and candidate count (each balancer in its own process)',
    options: { picksPerRun: picks, repeats },
    contenders: Object.fromEntries(BALANCERS.map((name) => [name, `createBalancer('${name}')`])),
    tables,
    notes: [`Includes ~${overhead.toFixed(1)} ns of loop and mutation per pick (an array read instead of pick()).`],
    details: { rows },
  });
}
