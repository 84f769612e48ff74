import {
  type Attributes,
  type BatchObservableResult,
  type MeterProvider,
  metrics,
  type Observable,
  trace,
} from '@opentelemetry/api';
import { invalidOption } from './errors.js';
import type { Router, ServedRead } from './router.js';

export interface InstrumentRouterOptions {
  /** Where the instruments are created. @default the global provider (`metrics.getMeter`) */
  meterProvider?: MeterProvider | undefined;
  /** Added to every measurement, e.g. `{ 'service.instance.id': ... }` when several routers report. @default {} */
  attributes?: Attributes | undefined;
  /**
   * Observe each read: sets the serving node on the active span (`lagless.node`, `lagless.route`,
   * `lagless.reason` when the primary served it) and records `lagless.read.duration`. Costs a little
   * per read; `false` keeps metrics to what the router counts anyway. @default true
   */
  perRead?: boolean | undefined;
}

/** What instrumentation needs of a router: any `Router<C>` (or `$lagless.router`) fits. */
export type InstrumentedRouter = Pick<Router, 'stats' | 'on'>;

/** What {@link instrumentRouter} returns: `close()` removes every callback and listener it added. */
export interface RouterInstrumentation extends Disposable {
  close(): void;
}

const METER_NAME = '@lagless/core';
const STATES = ['up', 'down', 'probing'] as const;

/**
 * Reports a router through OpenTelemetry: counters of reads by node and route, waits, fallbacks and
 * retries; gauges of each replica's state, replay lag (ms and bytes, and its p99 over the lag
 * history window) and in-flight reads; and, unless `perRead: false`, the serving node on the span
 * active when a read settles. Counts come from `stats()` at collection time, so reads pay nothing
 * for them.
 */
export function instrumentRouter(
  router: InstrumentedRouter,
  options: InstrumentRouterOptions = {},
): RouterInstrumentation {
  if (typeof router?.stats !== 'function' || typeof router.on !== 'function') {
    throw invalidOption('instrumentRouter(router)', 'a lagless Router', router);
  }
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('instrumentRouter(router, options)', 'an object', options);
  }
  const { meterProvider, attributes = {}, perRead = true } = options;
  if (meterProvider !== undefined && typeof meterProvider?.getMeter !== 'function') {
    throw invalidOption('meterProvider', 'a MeterProvider', meterProvider);
  }
  if (typeof attributes !== 'object' || attributes === null) throw invalidOption('attributes', 'an object', attributes);
  if (typeof perRead !== 'boolean') throw invalidOption('perRead', 'a boolean', perRead);
  const meter = (meterProvider ?? metrics).getMeter(METER_NAME);
  const base = { ...attributes };

  const reads = meter.createObservableCounter('lagless.reads', {
    description: 'Reads served, by node and route (replica or primary)',
    unit: '{read}',
  });
  const writes = meter.createObservableCounter('lagless.writes', {
    description: 'Writes run through the router',
    unit: '{write}',
  });
  const replicaState = meter.createObservableGauge('lagless.replica.state', {
    description: "1 for each replica's current state (up, down, probing), 0 for the others",
  });
  const lagMs = meter.createObservableGauge('lagless.replica.lag', {
    description: 'How long ago the primary passed the position the replica has replayed',
    unit: 'ms',
  });
  const lagBytes = meter.createObservableGauge('lagless.replica.lag_bytes', {
    description: "WAL bytes between the primary's position and the replica's replay position",
    unit: 'By',
  });
  const lagP99 = meter.createObservableGauge('lagless.replica.lag.p99', {
    description: "p99 of the replica's measured lag over the lag history window",
    unit: 'ms',
  });
  const inFlight = meter.createObservableGauge('lagless.in_flight', {
    description: 'Reads and writes running now, by node',
    unit: '{operation}',
  });
  const observables: Observable[] = [reads, writes, replicaState, lagMs, lagBytes, lagP99, inFlight];
  // One stats() per collection for every instrument, not one per instrument.
  const collect = (result: BatchObservableResult): void => {
    const stats = router.stats();
    const primary = { ...base, 'lagless.node': stats.primary.name, 'lagless.role': 'primary' };
    result.observe(reads, stats.reads.primary, { ...primary, 'lagless.route': 'primary' });
    result.observe(writes, stats.writes, base);
    result.observe(inFlight, stats.primary.inFlight, primary);
    for (const replica of stats.replicas) {
      const node = { ...base, 'lagless.node': replica.name, 'lagless.role': 'replica' };
      result.observe(reads, replica.served, { ...node, 'lagless.route': 'replica' });
      result.observe(inFlight, replica.inFlight, node);
      for (const state of STATES) {
        result.observe(replicaState, replica.state === state ? 1 : 0, { ...node, 'lagless.state': state });
      }
      if (replica.lagMs !== null) result.observe(lagMs, replica.lagMs, node);
      if (replica.lagBytes !== null) result.observe(lagBytes, replica.lagBytes, node);
      if (replica.lagHistory.samples > 0) result.observe(lagP99, replica.lagHistory.p99Ms, node);
    }
  };
  meter.addBatchObservableCallback(collect, observables);

  // Rare events carry what stats() cannot: why a read fell back, how a wait ended, where a retry came from.
  const waits = meter.createCounter('lagless.read.waits', {
    description: 'Reads that waited for a replica to replay what they required, by outcome',
    unit: '{read}',
  });
  const waitDuration = meter.createHistogram('lagless.read.wait.duration', {
    description: 'How long reads waited for a replica to replay what they required',
    unit: 'ms',
  });
  const fallbacks = meter.createCounter('lagless.read.fallbacks', {
    description: 'Reads sent to the primary although a replica could have served them, by reason',
    unit: '{read}',
  });
  const retries = meter.createCounter('lagless.read.retries', {
    description: 'Reads run again elsewhere after a replica failed at the connection level',
    unit: '{read}',
  });
  const unsubscribe = [
    router.on('wait', (event) => {
      const attrs = { ...base, 'lagless.outcome': event.outcome };
      waits.add(1, attrs);
      waitDuration.record(event.waitedMs, attrs);
    }),
    router.on('fallback', (event) => fallbacks.add(1, { ...base, 'lagless.reason': event.reason })),
    router.on('retry', (event) => retries.add(1, { ...base, 'lagless.node': event.replica })),
  ];

  if (perRead) {
    const duration = meter.createHistogram('lagless.read.duration', {
      description: 'Reads from the call to settling (waits and retries included), by serving node and route',
      unit: 'ms',
    });
    unsubscribe.push(
      router.on('read', (read: ServedRead) => {
        duration.record(read.durationMs, { ...base, 'lagless.node': read.node, 'lagless.route': read.route });
        // Emitted in the caller's async context: the span active there is the caller's.
        const span = trace.getActiveSpan();
        if (span === undefined) return;
        span.setAttribute('lagless.node', read.node);
        span.setAttribute('lagless.route', read.route);
        if (read.reason !== undefined) span.setAttribute('lagless.reason', read.reason);
      }),
    );
  }

  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    meter.removeBatchObservableCallback(collect, observables);
    for (const off of unsubscribe) off();
  };
  return { close, [Symbol.dispose]: close };
}
