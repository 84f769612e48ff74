// What every benchmark needs, once: medians over rounds, rounds that rotate their contenders so drift
// on a shared machine hits all alike, a measured window (throughput, client CPU per op, latency
// percentiles), a concurrency driver, options with full and quick defaults, and one shape for
// bench/results/*.json (tables of contenders with ratios to a baseline, and the targets)
// that bench/report.ts turns into Markdown and SVG.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type PgNode, pgNode } from '@lagless/core/pg';
import type { Cluster } from '@lagless/testkit';
import pg from 'pg';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile (`p` in 0..100); NaN for no samples. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

export const round = (x: number, digits = 0): number => +x.toFixed(digits);

/**
 * Runs `rounds` rounds; each runs every contender once, the order rotated by one per round, so no
 * contender always runs first (cold) or right after the heaviest one. Samples come back per name.
 */
export async function interleave<T>(
  names: readonly string[],
  rounds: number,
  run: (name: string, round: number) => Promise<T>,
): Promise<Record<string, T[]>> {
  const samples: Record<string, T[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length] as string;
      samples[name]?.push(await run(name, r));
    }
  }
  return samples;
}

/** Runs `concurrency` loops calling `body` until `ms` have passed (an iteration in flight finishes). */
export async function runLoops(concurrency: number, ms: number, body: (loop: number) => Promise<void>): Promise<void> {
  const deadline = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      while (performance.now() < deadline) await body(loop);
    }),
  );
}

/** Counts and times operations of a window, by kind (`read`, `write`, ...). */
export interface Recorder {
  time<T>(kind: string, op: () => PromiseLike<T>): Promise<T>;
}

export interface KindStats {
  ops: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface Window {
  /** Wall time actually measured: the deadline plus the iterations that were in flight at it. */
  ms: number;
  ops: number;
  opsPerSec: number;
  /** User + system CPU of this whole process over the window, per op: the client's cost. */
  cpuUsPerOp: number;
  byKind: Record<string, KindStats>;
}

/** A window of {@link runLoops}: throughput, client CPU per op and latency, by kind of op. */
export async function measure(
  concurrency: number,
  ms: number,
  body: (record: Recorder, loop: number) => Promise<void>,
): Promise<Window> {
  const latencies = new Map<string, number[]>();
  const record: Recorder = {
    async time(kind, op) {
      const started = performance.now();
      const result = await op();
      const elapsed = performance.now() - started;
      const list = latencies.get(kind);
      if (list) list.push(elapsed);
      else latencies.set(kind, [elapsed]);
      return result;
    },
  };
  const cpu = process.cpuUsage();
  const started = performance.now();
  await runLoops(concurrency, ms, (loop) => body(record, loop));
  const elapsed = performance.now() - started;
  const { user, system } = process.cpuUsage(cpu);
  const byKind: Record<string, KindStats> = {};
  let ops = 0;
  for (const [kind, list] of latencies) {
    ops += list.length;
    byKind[kind] = {
      ops: list.length,
      opsPerSec: list.length / (elapsed / 1000),
      p50Ms: percentile(list, 50),
      p99Ms: percentile(list, 99),
    };
  }
  return { ms: elapsed, ops, opsPerSec: ops / (elapsed / 1000), cpuUsPerOp: (user + system) / ops, byKind };
}

export interface WindowSummary {
  opsPerSec: number;
  cpuUsPerOp: number;
  byKind: Record<string, { opsPerSec: number; p50Ms: number; p99Ms: number }>;
}

/** Medians over rounds, metric by metric (so a summary need not be one of the windows). */
export function summarize(windows: readonly Window[]): WindowSummary {
  const kinds = new Set(windows.flatMap((w) => Object.keys(w.byKind)));
  const of = (pick: (w: Window) => number | undefined, digits: number) =>
    round(median(windows.map(pick).filter((x): x is number => x !== undefined)), digits);
  return {
    opsPerSec: of((w) => w.opsPerSec, 0),
    cpuUsPerOp: of((w) => w.cpuUsPerOp, 1),
    byKind: Object.fromEntries(
      [...kinds].map((kind) => [
        kind,
        {
          opsPerSec: of((w) => w.byKind[kind]?.opsPerSec, 0),
          p50Ms: of((w) => w.byKind[kind]?.p50Ms, 3),
          p99Ms: of((w) => w.byKind[kind]?.p99Ms, 3),
        },
      ]),
    ),
  };
}

/**
 * Quick mode (`BENCH_QUICK=1`): short windows for development. Its results go to a scratch
 * directory unless `BENCH_RESULTS_DIR` says otherwise, so bench/results/ only ever holds full runs.
 */
export const QUICK = process.env.BENCH_QUICK === '1';

/** Where results are written and read: `BENCH_RESULTS_DIR`, else bench/results/ (full) or a scratch directory (quick). */
export function resultsDir(): string {
  const dir =
    process.env.BENCH_RESULTS_DIR ??
    (QUICK ? join(tmpdir(), 'lagless-bench-quick') : fileURLToPath(new URL('./results/', import.meta.url)));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A bench's numeric options: `--name value` on the command line, else the full-run default, or the
 * quick one under `BENCH_QUICK=1`. bench/run-all.ts passes the values that fit its time budget.
 */
export function benchOptions<K extends string>(
  defaults: Record<K, readonly [full: number, quick: number]>,
): Record<K, number> {
  const names = Object.keys(defaults) as K[];
  const { values } = parseArgs({
    options: Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
    // A script may take further flags of its own (core-pick's --child).
    strict: false,
  });
  const resolved = {} as Record<K, number>;
  for (const name of names) {
    const given = values[name];
    const value = typeof given === 'string' ? Number(given) : defaults[name][QUICK ? 1 : 0];
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number, got ${given}`);
    resolved[name] = value;
  }
  return resolved;
}

/** One contender's figures in a table, as every bench reports them. */
export interface ContenderResult {
  name: string;
  /** Operations per second (queries, writes, picks...: the table's `unit`); a median over rounds. */
  throughput: number;
  /** Client CPU (user + system of the bench process) over the measured windows ÷ operations, in µs. */
  cpuUsPerQuery: number;
  /** To the table's baseline contender (which has 1 and 1). */
  /** `cpu` is null when the baseline costs no measurable CPU (a ratio to 0 means nothing). */
  ratios: { throughput: number; cpu: number | null };
  /** Latency percentiles of one operation, in ms, where the bench measures them (medians over rounds). */
  latency?: { p50Ms: number; p99Ms: number };
  /** Further figures named by the table's `extraColumns` (share served by replicas, stale reads...). */
  extra?: Record<string, number>;
}

/** A target from the issue, beside the value this run measured. */
export interface TargetResult {
  label: string;
  measured: number;
  op: '>=' | '<=';
  limit: number;
  met: boolean;
}

export interface ResultTable {
  title: string;
  /** What `throughput` counts per second, e.g. `reads/s`. */
  unit: string;
  baseline: string;
  contenders: ContenderResult[];
  /** Column titles for `extra` keys, in order. */
  extraColumns?: Record<string, string>;
  targets?: TargetResult[];
}

export interface BenchResult {
  bench: string;
  /** One line: what is measured and how. */
  title: string;
  date: string;
  node: string;
  /** CPUs of the machine: client and servers share them. */
  machine: number;
  quick: boolean;
  /** The options the run used (rounds, seconds per window, ...). */
  options: Record<string, number | string>;
  totalSeconds: number;
  /** Contender name → what it is. */
  contenders: Record<string, string>;
  tables: ResultTable[];
  notes?: string[];
  /** Bench-specific raw figures (samples per round and the like). */
  details?: unknown;
}

/** One row of {@link table}: a name, its medians, and optional latency and extra figures. */
export interface RowInput {
  name: string;
  throughput: number;
  cpuUsPerQuery: number;
  latency?: { p50Ms: number; p99Ms: number };
  extra?: Record<string, number>;
}

/** Builds a table, the ratios computed against `baseline` (which must be one of the rows). */
export function table(
  title: string,
  unit: string,
  baseline: string,
  rows: readonly RowInput[],
  more: { extraColumns?: Record<string, string>; targets?: TargetResult[] } = {},
): ResultTable {
  const base = rows.find((row) => row.name === baseline);
  if (!base) throw new Error(`${title}: no baseline row ${baseline}`);
  return {
    title,
    unit,
    baseline,
    contenders: rows.map((row) => ({
      name: row.name,
      throughput: round(row.throughput, row.throughput < 100 ? 2 : 0),
      cpuUsPerQuery: +row.cpuUsPerQuery.toPrecision(4),
      ratios: {
        throughput: round(row.throughput / base.throughput, 3),
        cpu: base.cpuUsPerQuery > 0 ? round(row.cpuUsPerQuery / base.cpuUsPerQuery, 3) : null,
      },
      ...(row.latency ? { latency: { p50Ms: round(row.latency.p50Ms, 3), p99Ms: round(row.latency.p99Ms, 3) } } : {}),
      ...(row.extra ? { extra: row.extra } : {}),
    })),
    ...more,
  };
}

/**
 * One table of a throughput bench: every contender measured over interleaved rounds, its row taken
 * from the `kind` operations of its windows, and each round's ops/s kept in `byRound[title]`.
 */
export async function interleavedTable(
  title: string,
  unit: string,
  baseline: string,
  names: readonly string[],
  rounds: number,
  run: (name: string) => Promise<Window>,
  kind: string,
  byRound: Record<string, Record<string, number[]>>,
): Promise<ResultTable> {
  const samples = await interleave(names, rounds, run);
  byRound[title] = Object.fromEntries(
    names.map((name) => [name, (samples[name] ?? []).map((w) => round(w.opsPerSec))]),
  );
  return table(
    title,
    unit,
    baseline,
    names.map((name) => rowOf(name, samples[name] ?? [], kind)),
  );
}

/** A row from the windows of one contender: medians over rounds, latency of `kind` if given. */
export function rowOf(name: string, windows: readonly Window[], kind?: string): RowInput {
  const summary = summarize(windows);
  const ofKind = kind === undefined ? undefined : summary.byKind[kind];
  return {
    name,
    throughput: ofKind?.opsPerSec ?? summary.opsPerSec,
    cpuUsPerQuery: summary.cpuUsPerOp,
    ...(ofKind || Object.keys(summary.byKind).length === 1
      ? { latency: ofKind ?? (Object.values(summary.byKind)[0] as { p50Ms: number; p99Ms: number }) }
      : {}),
  };
}

/** A target measured on `table`: `pick` reads the figure from one contender. */
export function target(
  label: string,
  resultTable: ResultTable,
  contender: string,
  pick: (row: ContenderResult) => number | undefined,
  op: '>=' | '<=',
  limit: number,
): TargetResult {
  const row = resultTable.contenders.find((c) => c.name === contender);
  const measured = row === undefined ? Number.NaN : (pick(row) ?? Number.NaN);
  const met = op === '>=' ? measured >= limit : measured <= limit;
  const result = { label, measured: round(measured, 3), op, limit, met };
  resultTable.targets = [...(resultTable.targets ?? []), result];
  return result;
}

/** A figure for a table cell: integers with separators from 100 up, three significant digits below. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return String(+x.toPrecision(3));
}

/** Prints a table on stdout the way the README shows it, less the formatting. */
export function printTable(t: ResultTable): void {
  const extra = Object.entries(t.extraColumns ?? {});
  const header = ['', t.unit, '×base', 'CPU µs/q', '×base', 'p50 ms', 'p99 ms', ...extra.map(([, title]) => title)];
  const lines = t.contenders.map((c) => [
    c.name,
    formatNumber(c.throughput),
    c.ratios.throughput.toFixed(2),
    formatNumber(c.cpuUsPerQuery),
    c.ratios.cpu === null ? '–' : c.ratios.cpu.toFixed(2),
    c.latency ? formatNumber(c.latency.p50Ms) : '',
    c.latency ? formatNumber(c.latency.p99Ms) : '',
    ...extra.map(([key]) => (c.extra?.[key] === undefined ? '' : formatNumber(c.extra[key] as number))),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => (line[i] ?? '').length)));
  const format = (line: string[]) =>
    line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  console.log(`\n${t.title} (baseline: ${t.baseline})`);
  console.log(format(header));
  for (const line of lines) console.log(format(line));
  for (const tr of t.targets ?? []) {
    console.log(`target ${tr.label}: ${tr.measured} ${tr.op} ${tr.limit} ${tr.met ? 'met' : 'NOT MET'}`);
  }
}

const startedAt = performance.now();

/** Writes `<results dir>/<bench>.json` in the one shape every bench shares, and prints its tables. */
export function writeResult(
  fields: Omit<BenchResult, 'date' | 'node' | 'machine' | 'quick' | 'totalSeconds'>,
): BenchResult {
  const { bench, title, ...rest } = fields;
  const result: BenchResult = {
    bench,
    title,
    date: new Date().toISOString(),
    node: process.version,
    machine: cpus().length,
    quick: QUICK,
    totalSeconds: round((performance.now() - startedAt) / 1000, 1),
    ...rest,
  };
  for (const t of result.tables) printTable(t);
  const file = join(resultsDir(), `${bench}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\n${result.totalSeconds} s; ${file} written${QUICK ? ' (quick mode: not for bench/results)' : ''}`);
  return result;
}

/**
 * Client CPU and wall time of a synchronous or async section, for benches that time their own loops
 * (no concurrency driver): `ops` is how many operations the section ran.
 */
export async function timed(ops: number, section: () => Promise<void> | void): Promise<Window> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await section();
  const elapsed = performance.now() - started;
  const { user, system } = process.cpuUsage(cpu);
  return { ms: elapsed, ops, opsPerSec: ops / (elapsed / 1000), cpuUsPerOp: (user + system) / ops, byKind: {} };
}

/** The "User" table the ORM benchmarks read, with `rows` rows, replayed by every replica. */
export async function seedUsers(cluster: Cluster, rows: number): Promise<void> {
  await cluster.primary.query(
    'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)',
  );
  await cluster.primary.query(
    `INSERT INTO "User" (email, name) SELECT 'u' || i || '@x', md5(i::text) FROM generate_series(1, ${rows}) i`,
  );
  await cluster.primary.query('ANALYZE "User"');
  await cluster.waitForReplicas();
}

/**
 * One node-postgres pool per node of `cluster`, shared by every contender of a bench (they never run
 * at the same time), with `max` above the highest concurrency so no contender queues on its pool.
 */
export function clusterPgNodes(
  cluster: Cluster,
  max: number,
): { primary: PgNode<pg.Pool>; replicas: PgNode<pg.Pool>[]; all: PgNode<pg.Pool>[] } {
  const node = (name: string, url: string) => {
    const pool = new pg.Pool({ connectionString: url, max });
    pool.on('error', () => {});
    return pgNode(name, pool);
  };
  const primary = node('primary', cluster.primary.url);
  const replicas = cluster.replicas.map((replica) => node(replica.name, replica.url));
  return { primary, replicas, all: [primary, ...replicas] };
}
