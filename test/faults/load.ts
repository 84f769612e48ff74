// Shared by the fault tests: app instances over a testkit cluster, and concurrent readers that count
// every read, every failed read and every stale read, with the serving node named by the server.
import { createRouter, type Router, type RouterOptions } from '@lagless/core';
import { type PgNode, pgNode } from '@lagless/core/pg';
import type { Cluster } from '@lagless/testkit';
import pg from 'pg';

export type Pool = pg.Pool;

/** One app instance: its own pools (through pgNode, as the README shows) and its own router. */
export interface Instance {
  readonly router: Router<Pool>;
  readonly nodes: PgNode<Pool>[];
  close(): Promise<void>;
}

export interface InstanceOptions extends Partial<Omit<RouterOptions<Pool>, 'primary' | 'replicas'>> {
  /** Where the primary is reached (a fault proxy in front of it, say). @default cluster.primary.url */
  primaryUrl?: string;
  /** Replica URLs. @default every replica of the cluster */
  replicaUrls?: readonly string[];
  pool?: pg.PoolConfig;
  /** Replica i + 1 runs in `zones[i]` (replicas past the list have no zone). @default none */
  zones?: readonly string[];
}

export function instance(cluster: Cluster, options: InstanceOptions = {}): Instance {
  const { primaryUrl, replicaUrls, pool, zones = [], ...routerOptions } = options;
  const poolOf = (url: string) =>
    new pg.Pool({ connectionString: url, max: 8, connectionTimeoutMillis: 1000, ...pool });
  const primary = pgNode('primary', poolOf(primaryUrl ?? cluster.primary.url));
  const replicas = (replicaUrls ?? cluster.replicas.map((r) => r.url)).map((url, i) => {
    const zone = zones[i];
    return pgNode(cluster.replicas[i]?.name ?? `replica${i + 1}`, poolOf(url), zone === undefined ? {} : { zone });
  });
  const router = createRouter<Pool>({ logger: false, ...routerOptions, primary, replicas });
  const nodes = [primary, ...replicas];
  return {
    router,
    nodes,
    // The README's teardown order: the router, then the pools.
    close: async () => {
      await router.close();
      await Promise.all(nodes.map((node) => node.end().catch(() => {})));
    },
  };
}

/** What one read saw: the port of the server that ran it, and whether it was older than it must be. */
export interface Observation {
  readonly port: number;
  readonly stale: boolean;
}

export interface LoadReport {
  reads: number;
  failed: number;
  stale: number;
  /** Reads per serving port. */
  byPort: Map<number, number>;
  /** The first few failures, for the assertion message. */
  errors: string[];
  /** The longest single read, in ms. */
  maxMs: number;
}

export function emptyReport(): LoadReport {
  return { reads: 0, failed: 0, stale: 0, byPort: new Map(), errors: [], maxMs: 0 };
}

/**
 * Runs `readers` loops of `read` concurrently until `stop()` says so, counting what each read saw.
 * A read that throws counts as failed (and its message is kept); it never stops the loop.
 */
export async function runReaders(
  readers: number,
  read: (reader: number, iteration: number) => Promise<Observation>,
  stop: () => boolean,
  report: LoadReport = emptyReport(),
): Promise<LoadReport> {
  await Promise.all(
    Array.from({ length: readers }, async (_, reader) => {
      for (let iteration = 0; !stop(); iteration++) {
        const started = performance.now();
        try {
          const seen = await read(reader, iteration);
          report.reads++;
          if (seen.stale) report.stale++;
          report.byPort.set(seen.port, (report.byPort.get(seen.port) ?? 0) + 1);
        } catch (error) {
          report.failed++;
          if (report.errors.length < 5) report.errors.push(String((error as Error)?.message ?? error));
        }
        report.maxMs = Math.max(report.maxMs, performance.now() - started);
        // Yield, so a read that fails synchronously fast cannot starve the timers that end the run.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
  return report;
}

/** Readers that run in the background until `finish()`; `finish()` resolves to their report. */
export function backgroundReaders(
  readers: number,
  read: (reader: number, iteration: number) => Promise<Observation>,
): { report: LoadReport; finish: () => Promise<LoadReport> } {
  let stopped = false;
  const report = emptyReport();
  const running = runReaders(readers, read, () => stopped, report);
  return {
    report,
    finish: async () => {
      stopped = true;
      return running;
    },
  };
}

/** Runs for `ms` of wall time. */
export function forMs(ms: number): () => boolean {
  const end = performance.now() + ms;
  return () => performance.now() >= end;
}

/** Polls `check` until it holds, or fails naming `what`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A readable summary for assertion messages. */
export function describeReport(report: LoadReport): string {
  const ports = [...report.byPort].map(([port, n]) => `${port}:${n}`).join(' ');
  return `${report.reads} reads, ${report.failed} failed, ${report.stale} stale, by port ${ports}; errors: ${report.errors.join(' | ')}`;
}

// ---------------------------------------------------------------- an `items` table, as the fault tests use it

export const ITEMS_TABLE_SQL = 'CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)';

/** A row written in its own session, with the token that session hands its client. */
export interface Written {
  readonly id: number;
  readonly token: string;
}

/** Inserts a row through `target`; returns its id and the port of the server that took the write. */
export async function insertItem(target: Instance, note: string): Promise<{ id: number; port: number }> {
  return target.router.write(async (pool) => {
    const { rows } = await pool.query<{ id: number; port: number }>(
      'INSERT INTO items (note) VALUES ($1) RETURNING id, inet_server_port() AS port',
      [note],
    );
    return { id: Number(rows[0]?.id), port: Number(rows[0]?.port) };
  });
}

/** Writes `count` rows through `target`, each in its own session, keeping each session's token. */
export async function writeWithTokens(target: Instance, count: number, label: string): Promise<Written[]> {
  const written: Written[] = [];
  for (let i = 0; i < count; i++) {
    written.push(
      await target.router.session(async () => {
        const { id } = await insertItem(target, `${label} ${i}`);
        const token = await target.router.token();
        if (token === undefined) throw new Error('a session that wrote must have a token');
        return { id, token };
      }),
    );
  }
  return written;
}

/** One statement names the server and says whether it has the row: the two cannot disagree. */
export async function readItem(target: Instance, id: number): Promise<Observation> {
  return target.router.read(async (pool) => {
    const { rows } = await pool.query<{ port: number; found: boolean }>(
      'SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM items WHERE id = $1) AS found',
      [id],
    );
    return { port: Number(rows[0]?.port), stale: rows[0]?.found !== true };
  });
}

/** Spreads readers over a list: reader r's i-th read takes a different element than its neighbours'. */
export function pick<T>(list: readonly T[], reader: number, iteration: number): T {
  const item = list[(reader * 7 + iteration) % list.length];
  if (item === undefined) throw new Error('empty list');
  return item;
}

/** A session continuing from one of `rows`' tokens reads that row back. */
export const sessionRead = (target: Instance, rows: readonly Written[]) => (reader: number, iteration: number) => {
  const { id, token } = pick(rows, reader, iteration);
  return target.router.session({ token }, () => readItem(target, id));
};

/** Reads served by the server listening on `port`. */
export const servedBy = (report: LoadReport, port: number): number => report.byPort.get(port) ?? 0;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
