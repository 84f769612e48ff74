// `npm run bench`: every benchmark, each in a child process of its own (a crash, a leaked handle or a
// warmed JIT in one cannot touch the next), with windows sized so the whole run stays under 10
// minutes on a shared 2-core machine; then bench/results/README.md and the SVG charts from the JSON
// they wrote. Prints how long each took. `BENCH_QUICK=1` runs every bench briefly and writes to a
// scratch directory (see resultsDir() in lib.ts), so bench/results/ keeps full runs only.
//   npm run bench                          (generates the Prisma clients first)
//   BENCH_QUICK=1 node --conditions=lagless-source --import tsx bench/run-all.ts [--only token-capture,apply-delay]
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QUICK, resultsDir, round } from './lib.js';
import { writeReport } from './report.js';

/** Budget of the whole run, and what one bench may take before it is stopped (its results then missing). */
const BUDGET_SECONDS = 600;

interface Bench {
  name: string;
  script: string;
  /** Arguments of a full run under run-all (smaller windows than the script's own defaults). */
  args: string[];
  /** Expected seconds of a full run on this machine, for the budget check. */
  expectSeconds: number;
}

const BENCHES: Bench[] = [
  { name: 'core-pick', script: 'core-pick.ts', args: ['--picks', '1', '--repeats', '5'], expectSeconds: 15 },
  {
    name: 'core-read-overhead',
    script: 'core-read-overhead.ts',
    args: ['--reads', '100000', '--rounds', '5'],
    expectSeconds: 20,
  },
  {
    name: 'drizzle-overhead',
    script: 'drizzle-overhead.ts',
    args: ['--reads', '30000', '--rounds', '7'],
    expectSeconds: 15,
  },
  { name: 'testkit-start', script: 'testkit-start.ts', args: ['--runs', '3'], expectSeconds: 25 },
  {
    name: 'drizzle-select',
    script: 'drizzle-select.ts',
    args: ['--rounds', '5', '--seconds', '0.75'],
    expectSeconds: 90,
  },
  {
    name: 'prisma-findunique',
    script: 'prisma-findunique.ts',
    args: ['--rounds', '5', '--seconds', '0.5'],
    expectSeconds: 150,
  },
  {
    name: 'guarantees',
    script: 'guarantees.ts',
    args: ['--rounds', '3', '--seconds', '1.5', '--warmup', '0.5'],
    expectSeconds: 70,
  },
  { name: 'token-capture', script: 'token-capture.ts', args: ['--rounds', '5', '--seconds', '1'], expectSeconds: 50 },
  { name: 'apply-delay', script: 'apply-delay.ts', args: ['--rounds', '4', '--seconds', '1'], expectSeconds: 50 },
];

const { values } = parseArgs({ options: { only: { type: 'string' } } });
const only = values.only?.split(',');
const selected = only ? BENCHES.filter((bench) => only.includes(bench.name)) : BENCHES;
if (only && selected.length !== only.length) {
  throw new Error(`--only: unknown bench among ${only.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
}

let interrupted = false;

function runBench(bench: Bench, timeoutMs: number): Promise<{ code: number | null; seconds: number }> {
  const started = performance.now();
  const args = [
    '--conditions=lagless-source',
    '--import',
    'tsx',
    fileURLToPath(new URL(`./${bench.script}`, import.meta.url)),
    ...(QUICK ? [] : bench.args),
  ];
  return new Promise((resolve) => {
    // Its own process group, so a timeout stops the bench and the servers it started with it.
    const child = spawn(process.execPath, args, { stdio: 'inherit', detached: true, env: process.env });
    // Detached, it no longer hears the terminal's Ctrl-C: pass it on, let it clean up, run no more.
    const interrupt = () => {
      interrupted = true;
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGINT');
    };
    process.on('SIGINT', interrupt);
    const timer = setTimeout(() => {
      console.error(`\n${bench.name}: over ${Math.round(timeoutMs / 1000)} s, stopped`);
      // SIGINT first: testkit's cleanup stops its PostgreSQL servers on it.
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGINT');
      setTimeout(
        () => child.pid !== undefined && child.exitCode === null && process.kill(-child.pid, 'SIGKILL'),
        10_000,
      ).unref();
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      process.off('SIGINT', interrupt);
      resolve({ code, seconds: round((performance.now() - started) / 1000, 1) });
    });
  });
}

const started = performance.now();
const dir = resultsDir();
console.log(`${QUICK ? 'quick run' : 'full run'}: ${selected.length} benches, results in ${dir}`);
const timings: Array<{ name: string; seconds: number; ok: boolean }> = [];
for (const bench of selected) {
  if (interrupted) break;
  const elapsed = (performance.now() - started) / 1000;
  // Never more than 3× what it should take, nor past the budget by more than a minute.
  const timeoutMs = 1000 * Math.max(30, Math.min(3 * bench.expectSeconds, BUDGET_SECONDS + 60 - elapsed));
  console.log(`\n=== ${bench.name} (${bench.script}${QUICK ? ', quick' : ` ${bench.args.join(' ')}`})`);
  const { code, seconds } = await runBench(bench, timeoutMs);
  timings.push({ name: bench.name, seconds, ok: code === 0 });
  console.log(`=== ${bench.name}: ${code === 0 ? 'done' : `FAILED (exit ${code})`} in ${seconds} s`);
}

const { charts } = writeReport(dir);
const total = round((performance.now() - started) / 1000, 1);
console.log('\nbench                 seconds');
for (const t of timings) console.log(`${t.name.padEnd(20)} ${String(t.seconds).padStart(8)}${t.ok ? '' : '  FAILED'}`);
console.log(
  `${'total'.padEnd(20)} ${String(total).padStart(8)} (budget ${BUDGET_SECONDS} s${total > BUDGET_SECONDS ? ': OVER' : ''})`,
);
console.log(`${dir}/README.md and ${charts.length} SVG charts written`);
if (timings.some((t) => !t.ok)) process.exitCode = 1;
