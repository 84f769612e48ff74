// What every benchmark needs, once: medians over rounds, rounds that rotate their contenders so drift
// on a shared machine hits all alike, a measured window (throughput, client CPU per op, latency
// percentiles), a concurrency driver, and one shape for bench/results/*.json.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Cluster } from '@lagless/testkit';

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

export interface BenchResult {
  bench: string;
  date: string;
  node: string;
  /** CPUs of the machine: client and servers share them. */
  machine: number;
  rounds: number;
  results: unknown;
  [field: string]: unknown;
}

/** Writes bench/results/<bench>.json in the common shape, extra fields after the common ones. */
export function writeResult(
  bench: string,
  fields: { rounds: number; results: unknown; [field: string]: unknown },
): BenchResult {
  const { rounds, results, ...extra } = fields;
  const result: BenchResult = {
    bench,
    date: new Date().toISOString(),
    node: process.version,
    machine: cpus().length,
    rounds,
    ...extra,
    results,
  };
  writeFileSync(new URL(`./results/${bench}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  return result;
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
