import { describe, expect, it } from 'vitest';
import { LatencyTracker, type LatencyTrackerOptions } from '../src/latency.js';
import { expectInvalidOption } from './assertions.js';

/** A tracker on a hand-driven clock. */
function tracker(options: Omit<LatencyTrackerOptions, 'now'> = {}): { t: LatencyTracker; clock: { ms: number } } {
  const clock = { ms: 1_000 };
  return { t: new LatencyTracker({ ...options, now: () => clock.ms }), clock };
}

describe('LatencyTracker averages', () => {
  it('reads zero before any sample and takes the first sample as is', () => {
    const { t } = tracker();
    expect([t.peakEwmaMs, t.ewmaMs, t.count]).toEqual([0, 0, 0]);
    t.record(42);
    expect([t.peakEwmaMs, t.ewmaMs, t.count]).toEqual([42, 42, 1]);
  });

  it('lets a slower sample replace the peak EWMA at once, while the plain EWMA moves by its weight', () => {
    const { t, clock } = tracker({ decayMs: 1_000 });
    t.record(10);
    clock.ms += 100;
    t.record(100);
    const w = Math.exp(-100 / 1_000);
    expect(t.peakEwmaMs).toBe(100);
    expect(t.ewmaMs).toBeCloseTo(10 * w + 100 * (1 - w), 10);
  });

  it('decays towards faster samples with weight exp(-elapsed / decayMs)', () => {
    const { t, clock } = tracker({ decayMs: 10_000 });
    t.record(100);
    clock.ms += 10_000;
    t.record(10);
    const expected = 100 * Math.exp(-1) + 10 * (1 - Math.exp(-1));
    expect(t.peakEwmaMs).toBeCloseTo(expected, 10);
    expect(t.ewmaMs).toBeCloseTo(expected, 10);

    // After many time constants of fast samples, the spike is forgotten.
    for (let i = 0; i < 20; i++) {
      clock.ms += 10_000;
      t.record(10);
    }
    expect(t.peakEwmaMs).toBeCloseTo(10, 6);
  });

  it('barely moves for a fast sample that follows closely, so one good read does not hide a bad streak', () => {
    const { t, clock } = tracker({ decayMs: 10_000 });
    t.record(500);
    clock.ms += 10;
    t.record(1);
    expect(t.peakEwmaMs).toBeGreaterThan(499);
  });

  it('lets an idle peak score decay, so a replica passed over for slowness is tried again', () => {
    const { t, clock } = tracker({ decayMs: 1_000 });
    t.record(80);
    clock.ms += 1_000;
    expect(t.peakEwmaMs).toBeCloseTo(80 / Math.E, 6);
    expect(t.ewmaMs).toBe(80);
    clock.ms += 1_000_000;
    expect(t.peakEwmaMs).toBe(0);
    // The next slow sample is believed at once again.
    t.record(60);
    expect(t.peakEwmaMs).toBe(60);
  });

  it('lets the average the tie rule compares decay while idle too, so least-connections tries a passed-over replica again', () => {
    const { t, clock } = tracker({ decayMs: 1_000 });
    t.record(30);
    expect(t.idleDecayedEwmaMs).toBe(30);
    clock.ms += 1_000;
    expect(t.idleDecayedEwmaMs).toBeCloseTo(30 / Math.E, 6);
    // The plain EWMA (stats) stays what the samples said.
    expect(t.ewmaMs).toBe(30);
    clock.ms += 1_000_000;
    expect(t.idleDecayedEwmaMs).toBe(0);
  });

  it('ignores negative, NaN and infinite samples', () => {
    const { t } = tracker();
    t.record(5);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) t.record(bad);
    expect([t.peakEwmaMs, t.ewmaMs, t.count]).toEqual([5, 5, 1]);
    expect(t.percentiles()).toEqual({ p50Ms: 5, p95Ms: 5, p99Ms: 5 });
  });

  it('survives a clock that steps backwards without weights above 1', () => {
    const { t, clock } = tracker({ decayMs: 1_000 });
    t.record(50);
    clock.ms -= 500;
    t.record(10);
    expect(t.peakEwmaMs).toBe(50);
    expect(t.ewmaMs).toBe(50);
    expect(Number.isFinite(t.peakEwmaMs)).toBe(true);
  });

  it('uses performance.now by default', () => {
    const t = new LatencyTracker();
    t.record(3);
    t.record(5);
    expect(t.peakEwmaMs).toBeGreaterThanOrEqual(3);
    expect(t.peakEwmaMs).toBeLessThanOrEqual(5);
  });
});

describe('LatencyTracker percentiles', () => {
  it('are zero when empty', () => {
    expect(tracker().t.percentiles()).toEqual({ p50Ms: 0, p95Ms: 0, p99Ms: 0 });
  });

  it('use nearest rank over known samples, in any arrival order', () => {
    const { t } = tracker();
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    // A fixed shuffle: the ring keeps arrival order, percentiles must not depend on it.
    for (let i = 0; i < samples.length; i++) t.record(samples[(i * 37) % 100] as number);
    expect(t.percentiles()).toEqual({ p50Ms: 50, p95Ms: 95, p99Ms: 99 });
  });

  it('take the only sample for every percentile', () => {
    const { t } = tracker();
    t.record(7.5);
    expect(t.percentiles()).toEqual({ p50Ms: 7.5, p95Ms: 7.5, p99Ms: 7.5 });
  });

  it('cover only the last `window` samples once the ring wraps', () => {
    const { t } = tracker({ window: 4 });
    for (let ms = 1; ms <= 10; ms++) t.record(ms);
    expect(t.count).toBe(10);
    // Window holds 7, 8, 9, 10: rank ceil(0.5 × 4) = 2 → 8; ceil(0.95 × 4) = 4 → 10.
    expect(t.percentiles()).toEqual({ p50Ms: 8, p95Ms: 10, p99Ms: 10 });

    // Asking must not disturb the ring: the next sample still overwrites the oldest (7).
    t.record(1);
    expect(t.percentiles()).toEqual({ p50Ms: 8, p95Ms: 10, p99Ms: 10 });
    t.record(1);
    t.record(1);
    expect(t.percentiles()).toEqual({ p50Ms: 1, p95Ms: 10, p99Ms: 10 });
  });

  it('pick the tail out of a mostly fast distribution', () => {
    const { t } = tracker({ window: 1_000 });
    for (let i = 0; i < 1_000; i++) t.record(i % 100 === 99 ? 500 : i % 50 === 49 ? 100 : 2);
    expect(t.percentiles()).toEqual({ p50Ms: 2, p95Ms: 2, p99Ms: 100 });
  });
});

describe('LatencyTracker reset', () => {
  it('forgets everything, and the next sample starts afresh', () => {
    const { t, clock } = tracker({ window: 8 });
    for (let i = 0; i < 20; i++) t.record(100 + i);
    t.reset();
    expect([t.peakEwmaMs, t.ewmaMs, t.count]).toEqual([0, 0, 0]);
    expect(t.percentiles()).toEqual({ p50Ms: 0, p95Ms: 0, p99Ms: 0 });
    clock.ms += 5;
    t.record(3);
    expect([t.peakEwmaMs, t.ewmaMs, t.count]).toEqual([3, 3, 1]);
    expect(t.percentiles()).toEqual({ p50Ms: 3, p95Ms: 3, p99Ms: 3 });
  });
});

describe('LatencyTracker options', () => {
  it('rejects bad values eagerly, naming the option and the value', () => {
    expectInvalidOption(() => new LatencyTracker({ decayMs: 0 }), 'decayMs', 'received 0');
    expectInvalidOption(() => new LatencyTracker({ decayMs: -5 }), 'decayMs', '-5');
    expectInvalidOption(() => new LatencyTracker({ decayMs: Number.NaN }), 'decayMs', 'NaN');
    expectInvalidOption(() => new LatencyTracker({ decayMs: Number.POSITIVE_INFINITY }), 'decayMs', 'Infinity');
    expectInvalidOption(() => new LatencyTracker({ decayMs: '10' as unknown as number }), 'decayMs', '"10"');
    expectInvalidOption(() => new LatencyTracker({ window: 0 }), 'window', 'received 0');
    expectInvalidOption(() => new LatencyTracker({ window: 2.5 }), 'window', '2.5');
    expectInvalidOption(() => new LatencyTracker({ window: 1e9 }), 'window', '1000000000');
    expectInvalidOption(() => new LatencyTracker({ now: 5 as unknown as () => number }), 'now', '5');
    expectInvalidOption(() => new LatencyTracker(null as unknown as LatencyTrackerOptions), 'options', 'null');
  });

  it('rejects an unknown option rather than silently using a default', () => {
    expectInvalidOption(() => new LatencyTracker({ decay: 5 } as unknown as LatencyTrackerOptions), 'decay', 'decayMs');
  });

  it('takes undefined as the default', () => {
    const t = new LatencyTracker({ decayMs: undefined, window: undefined } as unknown as LatencyTrackerOptions);
    for (let i = 1; i <= 600; i++) t.record(i);
    // Default window 512 keeps samples 89..600.
    expect(t.percentiles().p50Ms).toBe(88 + 256);
  });
});
