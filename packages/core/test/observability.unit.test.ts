import { describe, expect, it } from 'vitest';
import { RouterEventEmitter } from '../src/events.js';
import type { RouterEvents, ServedRead } from '../src/index.js';
import { LagHistory } from '../src/lag-history.js';
import { LagMonitor } from '../src/lag-monitor.js';
import { expectInvalidOption } from './assertions.js';
import { closeAfterEach, FakeCluster, readOn, refused, waitFor } from './fake-cluster.js';

const track = closeAfterEach();

describe('LagHistory', () => {
  it('reports nearest-rank percentiles of the samples inside the window only', () => {
    const history = new LagHistory(1000, 64);
    for (let i = 1; i <= 10; i++) history.record(i * 100, i * 100); // lags 100..1000 at t = 100..1000
    expect(history.stats(1000)).toEqual({ p50Ms: 500, p95Ms: 1000, p99Ms: 1000, windowMs: 900, samples: 10 });
    // At t = 1550 only the samples from t >= 550 count: 600..1000.
    expect(history.stats(1550)).toEqual({ p50Ms: 800, p95Ms: 1000, p99Ms: 1000, windowMs: 950, samples: 5 });
    expect(history.stats(5000)).toEqual({ p50Ms: 0, p95Ms: 0, p99Ms: 0, windowMs: 0, samples: 0 });
  });

  it('keeps at most its capacity, the newest samples, and ignores impossible values', () => {
    const history = new LagHistory(1_000_000, 4);
    for (let i = 1; i <= 10; i++) history.record(i, i);
    history.record(Number.NaN, 11);
    history.record(-1, 11);
    history.record(Number.POSITIVE_INFINITY, 11);
    expect(history.stats(11)).toMatchObject({ samples: 4, p50Ms: 8, p99Ms: 10, windowMs: 4 });
    history.clear();
    expect(history.stats(11).samples).toBe(0);
  });
});

describe('LagMonitor', () => {
  function setup(alertMs: number | false) {
    const lines: string[] = [];
    const events = new RouterEventEmitter((line) => lines.push(line));
    const seen: RouterEvents['lag'][] = [];
    const replica = { name: 'r1', available: true };
    let lag: { bytes: number; ms: number } | undefined = { bytes: 0, ms: 0 };
    const monitor = new LagMonitor(alertMs, events, () => lag);
    events.on('lag', (event) => seen.push(event));
    let now = 0;
    const sample = (ms: number | undefined) => {
      lag = ms === undefined ? undefined : { bytes: ms * 10, ms };
      now += 100;
      monitor.sample([replica], now);
    };
    return { monitor, replica, seen, lines, sample, now: () => now };
  }

  it('alerts once when lag reaches lagAlertMs and once when it falls below half of it', () => {
    const { seen, lines, sample } = setup(100);
    for (const ms of [0, 99, 100, 180, 80, 60, 51, 50, 99, 49, 100]) sample(ms);
    expect(seen).toEqual([
      { replica: 'r1', state: 'behind', lagMs: 100, lagBytes: 1000, thresholdMs: 100 },
      { replica: 'r1', state: 'recovered', lagMs: 50, lagBytes: 500, thresholdMs: 100 },
      { replica: 'r1', state: 'behind', lagMs: 100, lagBytes: 1000, thresholdMs: 100 },
    ]);
    expect(lines).toEqual([
      '[lagless] replica "r1" is 100 ms (1000 bytes) behind the primary (lagAlertMs 100)',
      '[lagless] replica "r1" caught up: 50 ms behind the primary (lagAlertMs 100)',
      '[lagless] replica "r1" is 100 ms (1000 bytes) behind the primary (lagAlertMs 100)',
    ]);
  });

  it('records history for serving replicas with a known lag only, and alerts on nothing with false', () => {
    const { monitor, replica, seen, sample, now } = setup(false);
    sample(10_000);
    sample(undefined);
    replica.available = false;
    sample(20_000);
    expect(seen).toEqual([]);
    expect(monitor.history(replica, now())).toMatchObject({ samples: 1, p50Ms: 10_000, p99Ms: 10_000 });
    expect(monitor.history({ name: 'other', available: true }, now()).samples).toBe(0);
  });
});

describe('the lag alert on a router', () => {
  it('raises behind and recovered from the background probes, and keeps lag history in stats()', async () => {
    const fake = new FakeCluster();
    const router = track(
      fake.router([fake.replica('r1'), fake.replica('r2')], { probeIntervalMs: 10, lagAlertMs: 60 }),
    );
    const events: RouterEvents['lag'][] = [];
    router.on('lag', (event) => events.push(event));
    await router.ready();
    // The primary moves on, r1 replays everything, r2 nothing.
    const writer = setInterval(() => {
      fake.write();
      fake.catchUp('r1');
    }, 5);
    try {
      await waitFor(() => events.length > 0);
      expect(events[0]).toMatchObject({ replica: 'r2', state: 'behind', thresholdMs: 60 });
      expect(events[0]?.lagMs).toBeGreaterThanOrEqual(60);
      const [r1, r2] = router.stats().replicas;
      expect(r2?.lagHistory.samples).toBeGreaterThan(0);
      expect(r2?.lagHistory.p99Ms).toBeGreaterThanOrEqual(60);
      expect(r1?.lagHistory.p99Ms).toBeLessThan(60);
      fake.catchUp('r2');
      clearInterval(writer);
      fake.catchUp('r1');
      await waitFor(() => events.length > 1);
      expect(events.map((event) => [event.replica, event.state])).toEqual([
        ['r2', 'behind'],
        ['r2', 'recovered'],
      ]);
    } finally {
      clearInterval(writer);
    }
  });

  it('validates lagAlertMs', () => {
    const fake = new FakeCluster();
    for (const value of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5000', true]) {
      expectInvalidOption(
        () => fake.router([], { lagAlertMs: value as number }),
        'lagAlertMs',
        'a positive finite number of milliseconds, or false',
      );
    }
    track(fake.router([], { lagAlertMs: false }));
    track(fake.router([], { lagAlertMs: 1 }));
  });
});

describe('the per-read hook', () => {
  it("names the node of each read in 'read' events, only to listeners", async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')]));
    const reads: ServedRead[] = [];
    const off = router.on('read', (read) => reads.push(read));
    expect(await readOn(fake, router)).toBe('r1');
    await router.read(async (client) => fake.serve(client), { primary: true });
    off();
    await readOn(fake, router);
    expect(reads).toEqual([
      expect.objectContaining({ node: 'r1', route: 'replica', reason: undefined, attempts: 1, waitedMs: 0, ok: true }),
      expect.objectContaining({ node: 'primary', route: 'primary', reason: 'forced', attempts: 1, ok: true }),
    ]);
    expect(reads[0]?.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('tells why the primary served a read: no replicas, a wait that timed out, retries exhausted', async () => {
    const fake = new FakeCluster();
    const none = track(fake.router([]));
    const reads: ServedRead[] = [];
    none.on('read', (read) => reads.push(read));
    await readOn(fake, none);
    expect(reads.pop()).toMatchObject({ node: 'primary', route: 'primary', reason: 'no-replicas' });

    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20 }));
    router.on('read', (read) => reads.push(read));
    await router.ready();
    await router.session(async () => {
      await router.write(async () => fake.write());
      expect(await readOn(fake, router)).toBe('primary');
    });
    const timedOut = reads.pop();
    expect(timedOut).toMatchObject({ node: 'primary', route: 'primary', reason: 'lsn-timeout', attempts: 1 });
    expect(timedOut?.waitedMs).toBeGreaterThan(0);

    const retried = track(fake.router([fake.replica('r2')]));
    retried.on('read', (read) => reads.push(read));
    await retried.ready();
    fake.down.add('r2');
    expect(await readOn(fake, retried)).toBe('primary');
    expect(reads.pop()).toMatchObject({ node: 'primary', reason: 'retries-exhausted', attempts: 2, ok: true });
  });

  it('reports a failed read with ok: false, and nothing for a read that never reached a node', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 5, onTimeout: 'error' }));
    const reads: ServedRead[] = [];
    router.on('read', (read) => reads.push(read));
    await expect(router.read(() => Promise.reject(new Error('syntax error')))).rejects.toThrow('syntax error');
    expect(reads).toEqual([expect.objectContaining({ node: 'r1', ok: false, attempts: 1 })]);
    await router.session(async () => {
      await router.write(async () => fake.write());
      await expect(readOn(fake, router)).rejects.toThrow(/no replica replayed/);
    });
    expect(reads).toHaveLength(1);
  });

  it("calls a session's onRead for its reads and its nested sessions' reads, not for others", async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')]));
    const outer: string[] = [];
    const inner: string[] = [];
    await readOn(fake, router);
    await router.session({ onRead: (read) => outer.push(`${read.node}/${read.route}`) }, async () => {
      await readOn(fake, router);
      await router.session({ onRead: (read) => inner.push(read.node) }, async () => {
        await router.read(async (client) => fake.serve(client), { primary: true });
      });
      await router.session(async () => readOn(fake, router));
    });
    await readOn(fake, router);
    await router.session(async () => readOn(fake, router));
    expect(outer).toEqual(['r1/replica', 'primary/primary', 'r1/replica']);
    expect(inner).toEqual(['primary']);
  });

  it('keeps reads working when an observer throws, and validates onRead', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')]));
    router.on('read', () => {
      throw new Error('observer bug');
    });
    const value = await router.session(
      {
        onRead: () => {
          throw new Error('observer bug');
        },
      },
      () => readOn(fake, router),
    );
    expect(value).toBe('r1');
    await expect(router.session({ onRead: 'yes' as never }, async () => 1)).rejects.toThrow(
      /Invalid option session\(init\)\.onRead: expected a function/,
    );
  });

  it('counts the attempts of a read retried on another replica', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin' }));
    await router.ready();
    const reads: ServedRead[] = [];
    router.on('read', (read) => reads.push(read));
    let first = true;
    const served = await router.read(async (client) => {
      if (first) {
        first = false;
        throw refused();
      }
      return fake.serve(client);
    });
    expect(reads).toEqual([expect.objectContaining({ node: served, route: 'replica', attempts: 2, ok: true })]);
  });
});
