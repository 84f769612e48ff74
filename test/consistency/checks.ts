// Shared by the consistency acceptance tests. A counter that only ever grows makes "older than an
// earlier read" observable: a read that returns a smaller value than one before it went back in time.
// Every read names its server with inet_server_port() in the statement that reads the data, so who
// served it is the server's word, never the router's counters.
import type { Cluster } from '@lagless/testkit';
import pg from 'pg';
import { emptyReport, type Instance, type LoadReport, type Observation, sleep } from '../faults/load.js';

export const COUNTER_SQL = [
  'CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)',
  'INSERT INTO counter VALUES (1, 0)',
  'CREATE TABLE counter_writer (id int PRIMARY KEY, running boolean NOT NULL)',
  'INSERT INTO counter_writer VALUES (1, false)',
  // Server-side, so the pace of writes does not depend on the test process's event loop, which the
  // readers keep busy: one commit per increment, about one a millisecond.
  `CREATE PROCEDURE run_counter_writer() LANGUAGE plpgsql AS $$
   BEGIN
     WHILE (SELECT running FROM counter_writer WHERE id = 1) LOOP
       UPDATE counter SET n = n + 1 WHERE id = 1;
       COMMIT;
       PERFORM pg_sleep(0.001);
     END LOOP;
   END $$`,
] as const;

/**
 * Pools for the instances under test. A shared two-core box runs three servers and the readers: a
 * new connection can take longer than load.ts's 1 s without anything being wrong with the router.
 */
export const POOL = Object.freeze({ connectionTimeoutMillis: 5000 });

export interface CounterRead {
  readonly n: number;
  readonly port: number;
}

export function readCounter(app: Instance): Promise<CounterRead> {
  return app.router.read(async (pool) => {
    const { rows } = await pool.query<{ n: number; port: number }>(
      'SELECT n, inet_server_port() AS port FROM counter WHERE id = 1',
    );
    const row = rows[0];
    if (!row) throw new Error('the counter row is missing');
    return { n: Number(row.n), port: Number(row.port) };
  });
}

export interface CounterWriter {
  /** The counter's value on the primary now. */
  value(): Promise<number>;
  /** Stops the writer; rejects if it failed meanwhile. */
  stop(): Promise<void>;
}

/**
 * Keeps incrementing the counter on the primary, outside any router: the writes of another application,
 * which the readers' routers know nothing about.
 */
export async function startCounterWriter(cluster: Cluster): Promise<CounterWriter> {
  await cluster.primary.query('UPDATE counter_writer SET running = true WHERE id = 1');
  const client = new pg.Client({ connectionString: cluster.primary.url });
  await client.connect();
  let failure: unknown;
  const running = client.query('CALL run_counter_writer()').then(
    () => {},
    (error: unknown) => {
      failure = error;
    },
  );
  return {
    async value() {
      const [row] = await cluster.primary.query<{ n: number }>('SELECT n FROM counter WHERE id = 1');
      return Number(row?.n);
    },
    async stop() {
      await cluster.primary.query('UPDATE counter_writer SET running = false WHERE id = 1');
      await running;
      await client.end().catch(() => {});
      if (failure !== undefined) throw failure;
    },
  };
}

/** A {@link LoadReport} whose `stale` counts regressions, with the first few spelled out. */
export interface SessionReport extends LoadReport {
  sessions: number;
  /** Every read's latency, in ms. */
  latencies: number[];
  samples: string[];
}

export interface SessionRunOptions {
  readers: number;
  readsPerSession: number;
  /** Stops starting sessions once this many reads were made. */
  minReads: number;
  /** Stops starting sessions after this long, whatever the count (the assertion on reads then fails). */
  capMs: number;
  /** A random pause of up to this long between a session's reads, as a request does work between queries. */
  thinkMs: number;
}

/**
 * Concurrent sessions that only read the counter, several consecutive reads each. A read that
 * returns less than the highest value seen earlier in its session is a regression.
 */
export async function checkSessions(app: Instance, options: SessionRunOptions): Promise<SessionReport> {
  const report: SessionReport = { ...emptyReport(), sessions: 0, latencies: [], samples: [] };
  const deadline = performance.now() + options.capMs;
  const more = () => report.reads < options.minReads && performance.now() < deadline;
  await Promise.all(
    Array.from({ length: options.readers }, async () => {
      while (more()) {
        try {
          await app.router.session(async () => {
            let highest: CounterRead | undefined;
            for (let i = 0; i < options.readsPerSession; i++) {
              const started = performance.now();
              const seen = await readCounter(app);
              const latency = performance.now() - started;
              report.latencies.push(latency);
              report.maxMs = Math.max(report.maxMs, latency);
              report.reads++;
              report.byPort.set(seen.port, (report.byPort.get(seen.port) ?? 0) + 1);
              if (highest && seen.n < highest.n) {
                report.stale++;
                if (report.samples.length < 5) {
                  report.samples.push(`read ${i}: ${highest.n}@${highest.port} then ${seen.n}@${seen.port}`);
                }
              }
              if (!highest || seen.n > highest.n) highest = seen;
              if (options.thinkMs > 0) await sleep(Math.random() * options.thinkMs);
            }
          });
          report.sessions++;
        } catch (error) {
          report.failed++;
          if (report.errors.length < 5) report.errors.push(String((error as Error)?.message ?? error));
        }
      }
    }),
  );
  return report;
}

/** `read` and a `stop` for `runReaders` that let exactly `total` reads start, across all readers. */
export function exactly(
  total: number,
  read: (reader: number, iteration: number) => Promise<Observation>,
): { read: (reader: number, iteration: number) => Promise<Observation>; stop: () => boolean } {
  let started = 0;
  return {
    // runReaders calls read() right after stop() returned false, with no await between: no overshoot.
    read: (reader, iteration) => {
      started++;
      return read(reader, iteration);
    },
    stop: () => started >= total,
  };
}

/** Share of a report's reads that replica servers answered (by their ports). */
export function replicaShare(report: LoadReport, cluster: Cluster): number {
  if (report.reads === 0) return 0;
  let served = 0;
  for (const replica of cluster.replicas) served += report.byPort.get(replica.port) ?? 0;
  return served / report.reads;
}

/** Reads per node, named: `primary=0 replica1=2480 replica2=2531 (replicas 100.0 %)`. */
export function byNode(report: LoadReport, cluster: Cluster): string {
  const nodes = [cluster.primary, ...cluster.replicas];
  const known = new Set(nodes.map((node) => node.port));
  const parts = nodes.map((node) => `${node.name}=${report.byPort.get(node.port) ?? 0}`);
  for (const [port, n] of report.byPort) if (!known.has(port)) parts.push(`port${port}=${n}`);
  return `${parts.join(' ')} (replicas ${(replicaShare(report, cluster) * 100).toFixed(1)} %)`;
}

/** Nearest-rank percentile; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export const ms = (value: number): string => `${value.toFixed(1)} ms`;
