// @lagless/core/otel on a real cluster: the OpenTelemetry SDK's in-memory metric exporter sees the
// router's counters move under load, each node's read count equal to the reads its server says it
// ran (inet_server_port()), and the span active around a read names the node whose port it returned.

import { instrumentRouter, type RouterInstrumentation } from '@lagless/core/otel';
import { type Cluster, startCluster } from '@lagless/testkit';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeReport,
  forMs,
  type Instance,
  ITEMS_TABLE_SQL,
  insertItem,
  instance,
  readItem,
  runReaders,
  servedBy,
  waitUntil,
} from '../faults/load.js';

let cluster: Cluster;
let app: Instance;
let instrumentation: RouterInstrumentation;
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
// Exports only when flushed: the test decides when a collection happens.
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const contextManager = new AsyncLocalStorageContextManager();
/** Server port of each node, by the name the router knows it by. */
const ports = new Map<string, number>();

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(ITEMS_TABLE_SQL);
  await cluster.primary.query(`INSERT INTO items (note) VALUES ('seed')`);
  await cluster.waitForReplicas();
  context.setGlobalContextManager(contextManager.enable());
  app = instance(cluster, { probeIntervalMs: 100, balancer: 'round-robin' });
  await app.router.ready();
  instrumentation = instrumentRouter(app.router, { meterProvider, attributes: { 'test.suite': 'otel' } });
  ports.set('primary', Number(new URL(cluster.primary.url).port));
  for (const replica of cluster.replicas) ports.set(replica.name, Number(new URL(replica.url).port));
});

afterAll(async () => {
  instrumentation?.close();
  await app?.close();
  await meterProvider.shutdown();
  await tracerProvider.shutdown();
  context.disable();
  await cluster?.stop();
});

interface Point {
  attributes: Record<string, unknown>;
  value: unknown;
}

/** Collects now and returns the data points of `name` (cumulative). */
async function collect(name: string): Promise<Point[]> {
  exporter.reset();
  await reader.forceFlush();
  const metrics = exporter
    .getMetrics()
    .flatMap((resource) => resource.scopeMetrics)
    .filter((scope) => scope.scope.name === '@lagless/core')
    .flatMap((scope) => scope.metrics);
  return metrics
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric) => metric.dataPoints as Point[])
    .map((point) => ({ attributes: point.attributes, value: point.value }));
}

async function metricValue(name: string, attributes: Record<string, unknown>): Promise<number> {
  const points = await collect(name);
  const matching = points.filter((point) =>
    Object.entries(attributes).every(([key, value]) => point.attributes[key] === value),
  );
  return matching.reduce((sum, point) => sum + Number(point.value), 0);
}

const replicaNames = () => cluster.replicas.map((replica) => replica.name);

describe('instrumentRouter', () => {
  it('sees the read counters follow the load, node by node, as the servers report it', async () => {
    const before = new Map<string, number>();
    for (const name of ['primary', ...replicaNames()]) {
      before.set(name, await metricValue('lagless.reads', { 'lagless.node': name }));
    }
    const waitsBefore = await metricValue('lagless.read.waits', {});
    const statsBefore = app.router.stats().reads.waits;
    // Plain reads spread over both replicas, and sessions that write and read their write back
    // (which wait for a replica to replay it, or go to the primary).
    const report = await runReaders(
      4,
      async (reader, iteration) => {
        if (reader === 0 && iteration < 20) {
          return app.router.session(async () => {
            const { id } = await insertItem(app, `load ${iteration}`);
            return readItem(app, id);
          });
        }
        return readItem(app, 1);
      },
      forMs(1500),
    );
    expect(report.failed, describeReport(report)).toBe(0);
    expect(report.stale, describeReport(report)).toBe(0);
    for (const [name, port] of ports) {
      const after = await metricValue('lagless.reads', { 'lagless.node': name });
      expect(after - (before.get(name) ?? 0), `${name}: ${describeReport(report)}`).toBe(servedBy(report, port));
    }
    for (const name of replicaNames()) {
      expect(servedBy(report, ports.get(name) ?? 0), describeReport(report)).toBeGreaterThan(0);
      const points = await collect('lagless.reads');
      expect(points.find((point) => point.attributes['lagless.node'] === name)?.attributes).toMatchObject({
        'lagless.route': 'replica',
        'lagless.role': 'replica',
        'test.suite': 'otel',
      });
    }
    const waits = (await metricValue('lagless.read.waits', {})) - waitsBefore;
    expect(waits).toBeGreaterThan(0);
    expect(waits).toBe(app.router.stats().reads.waits - statsBefore);
    expect(await metricValue('lagless.writes', {})).toBe(20);
    const durations = await collect('lagless.read.duration');
    expect(durations.map((point) => point.attributes['lagless.node']).sort()).toEqual(
      [...ports.keys()].filter((name) => servedBy(report, ports.get(name) ?? 0) > 0).sort(),
    );
  });

  it('reports replica state and replay lag as gauges, and fallbacks with their reason', async () => {
    for (const name of replicaNames()) {
      expect(await metricValue('lagless.replica.state', { 'lagless.node': name, 'lagless.state': 'up' })).toBe(1);
      expect(await metricValue('lagless.replica.state', { 'lagless.node': name, 'lagless.state': 'down' })).toBe(0);
    }
    const [first, second] = cluster.replicas;
    if (!first || !second) throw new Error('two replicas expected');
    await Promise.all([first.pauseReplay(), second.pauseReplay()]);
    try {
      const fallbacksBefore = await metricValue('lagless.read.fallbacks', { 'lagless.reason': 'lsn-timeout' });
      for (let i = 0; i < 3; i++) {
        // Neither replica can replay the write: the read waits waitTimeoutMs, then the primary serves it.
        const seen = await app.router.session(async () => readItem(app, (await insertItem(app, `paused ${i}`)).id));
        expect(seen).toEqual({ port: ports.get('primary'), stale: false });
      }
      expect((await metricValue('lagless.read.fallbacks', { 'lagless.reason': 'lsn-timeout' })) - fallbacksBefore).toBe(
        3,
      );
      // Behind by the three writes at least, in bytes and (once the probes saw it) in ms.
      await waitUntil('lag gauges above zero', async () => {
        const bytes = await metricValue('lagless.replica.lag_bytes', { 'lagless.node': first.name });
        const ms = await metricValue('lagless.replica.lag', { 'lagless.node': first.name });
        return bytes > 0 && ms > 0;
      });
    } finally {
      await Promise.all([first.resumeReplay(), second.resumeReplay()]);
    }
    await waitUntil('lag back to zero', async () => {
      const bytes = await Promise.all(
        replicaNames().map((name) => metricValue('lagless.replica.lag_bytes', { 'lagless.node': name })),
      );
      return bytes.every((value) => value === 0);
    });
  });

  it('sets the serving node on the span active around a read', async () => {
    const tracer = tracerProvider.getTracer('otel.test');
    spans.reset();
    const returned = new Map<string, number>();
    for (let i = 0; i < 6; i++) {
      await tracer.startActiveSpan(`request ${i}`, async (span) => {
        try {
          const seen = await app.router.read(
            async (pool) => {
              const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port');
              return Number(rows[0]?.port);
            },
            i === 5 ? { primary: true } : {},
          );
          returned.set(`request ${i}`, seen);
        } finally {
          span.end();
        }
      });
    }
    const finished = spans.getFinishedSpans();
    expect(finished).toHaveLength(6);
    const nodeOfPort = new Map([...ports].map(([name, port]) => [port, name]));
    for (const span of finished) {
      const port = returned.get(span.name);
      expect(span.attributes['lagless.node'], span.name).toBe(nodeOfPort.get(port ?? -1));
      expect(span.attributes['lagless.route']).toBe(span.name === 'request 5' ? 'primary' : 'replica');
    }
    expect(finished.find((span) => span.name === 'request 5')?.attributes['lagless.reason']).toBe('forced');
    // Both replicas served some of them (round-robin), so the attribute is not a constant.
    expect(new Set(finished.map((span) => span.attributes['lagless.node'])).size).toBe(3);
  });

  it('leaves spans alone after close()', async () => {
    instrumentation.close();
    const tracer = tracerProvider.getTracer('otel.test');
    spans.reset();
    await tracer.startActiveSpan('after close', async (span) => {
      expect(trace.getActiveSpan()).toBe(span);
      await readItem(app, 1);
      span.end();
    });
    expect(spans.getFinishedSpans().map((span) => span.attributes)).toEqual([{}]);
  });
});
