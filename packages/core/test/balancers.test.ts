import { describe, expect, it } from 'vitest';
import {
  BALANCER_NAMES,
  type BalancerCandidate,
  type BalancerFunction,
  type BalancerName,
  createBalancer,
  seededRandom,
} from '../src/balancers.js';
import { LatencyTracker } from '../src/latency.js';
import { expectInvalidOption } from './assertions.js';

interface Replica {
  name: string;
  inFlight: number;
  latencyScoreMs: number;
  weight: number;
}

const replica = (name: string, fields: Partial<Omit<Replica, 'name'>> = {}): Replica => ({
  name,
  inFlight: 0,
  latencyScoreMs: 0,
  weight: 1,
  ...fields,
});

const replicas = (count: number): Replica[] => Array.from({ length: count }, (_, i) => replica(`r${i}`));

/** Share of picks per candidate name, in percent. */
function shares(pick: () => BalancerCandidate, picks: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < picks; i++) {
    const name = pick().name;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return new Map([...counts].map(([name, count]) => [name, (100 * count) / picks]));
}

function randomInt(random: () => number, below: number): number {
  return Math.floor(random() * below);
}

/** Asserts a share in percent is within `tolerance` percentage points of `expected`. */
function expectShare(actual: number | undefined, expected: number, tolerance: number): void {
  expect(Math.abs((actual ?? 0) - expected), `share ${actual} vs ${expected} ± ${tolerance}`).toBeLessThanOrEqual(
    tolerance,
  );
}

const neverCalled = (): number => {
  throw new Error('random must not be called');
};

describe('seededRandom', () => {
  it('is deterministic per seed, differs across seeds and stays in [0, 1)', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const fromA = Array.from({ length: 10_000 }, a);
    expect(Array.from({ length: 10_000 }, b)).toEqual(fromA);
    expect(Array.from({ length: 10 }, c)).not.toEqual(fromA.slice(0, 10));
    for (const x of fromA) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
    const mean = fromA.reduce((sum, x) => sum + x, 0) / fromA.length;
    expect(mean).toBeCloseTo(0.5, 1);
  });

  it('rejects a seed that is not a finite number', () => {
    expectInvalidOption(() => seededRandom(Number.NaN), 'seed', 'NaN');
    expectInvalidOption(() => seededRandom('1' as unknown as number), 'seed', '"1"');
  });
});

describe('createBalancer validation', () => {
  it('rejects an unknown name, naming the option, the value and the valid names', () => {
    expectInvalidOption(
      () => createBalancer('fastest' as BalancerName),
      'balancer',
      '"fastest"',
      ...BALANCER_NAMES.map((name) => `'${name}'`),
    );
  });

  it('rejects values that are neither a name nor a function', () => {
    for (const bad of [undefined, null, 42, {}, ['random']]) {
      expectInvalidOption(() => createBalancer(bad as unknown as BalancerName), 'balancer');
    }
  });

  it('rejects a random source that is not a function', () => {
    expectInvalidOption(() => createBalancer('random', 0.5 as unknown as () => number), 'random', '0.5');
  });

  it('names built-in balancers after themselves and user functions custom', () => {
    for (const name of BALANCER_NAMES) expect(createBalancer(name).name).toBe(name);
    expect(createBalancer(() => 'a').name).toBe('custom');
  });
});

describe.each(BALANCER_NAMES)('%s', (name) => {
  it('returns the only candidate without drawing a random number', () => {
    const only = replica('only', { inFlight: 3, latencyScoreMs: 5 });
    const balancer = createBalancer(name, neverCalled);
    for (let i = 0; i < 3; i++) expect(balancer.pick([only])).toBe(only);
  });

  it('throws a typed error rather than returning undefined for no candidates', () => {
    expect(() => createBalancer(name).pick([])).toThrow(expect.objectContaining({ code: 'NO_REPLICA_AVAILABLE' }));
  });

  it('picks identical sequences from two balancers with the same seed', () => {
    const sequence = (): string[] => {
      const balancer = createBalancer(name, seededRandom(7));
      const shape = seededRandom(99);
      const pool = replicas(8);
      const out: string[] = [];
      for (let i = 0; i < 2_000; i++) {
        for (const r of pool) {
          r.inFlight = randomInt(shape, 4);
          r.latencyScoreMs = randomInt(shape, 50);
          r.weight = 1 + randomInt(shape, 5);
        }
        out.push(balancer.pick(pool.slice(0, 2 + (i % 7))).name);
      }
      return out;
    };
    const first = sequence();
    expect(sequence()).toEqual(first);
    expect(new Set(first).size).toBeGreaterThan(1);
  });

  it('stays in range even if a custom random source returns its bounds or garbage', () => {
    for (const value of [0, 0.9999999999999999, 1, -0.5, Number.NaN]) {
      const pool = replicas(5);
      const balancer = createBalancer(name, () => value);
      for (let i = 0; i < 10; i++) expect(pool).toContain(balancer.pick(pool));
    }
  });

  it('keeps the caller’s candidate type', () => {
    interface Tagged extends BalancerCandidate {
      readonly tag: number;
    }
    const pool: Tagged[] = [
      { ...replica('a'), tag: 1 },
      { ...replica('b'), tag: 2 },
    ];
    const picked: Tagged = createBalancer(name, seededRandom(1)).pick(pool);
    expect([1, 2]).toContain(picked.tag);
  });
});

describe('least-connections', () => {
  it('tries a replica it passed over as slow again once that replica has been idle a while', () => {
    // Found in the demo: after a restart, one slow spell left a replica out of every tie, so it got
    // no reads, so no samples, and its average stayed frozen at its worst for good.
    const clock = { ms: 0 };
    const tracked = (name: string, frozen = false) => {
      const latency = new LatencyTracker({ now: () => clock.ms });
      return {
        latency,
        candidate: {
          name,
          inFlight: 0,
          weight: 1,
          get latencyScoreMs() {
            return latency.peakEwmaMs;
          },
          get averageLatencyMs() {
            return frozen ? latency.ewmaMs : latency.idleDecayedEwmaMs;
          },
        },
      };
    };
    const slow = tracked('slow');
    const fast = tracked('fast');
    // The control: an average that only samples move, as before.
    const frozen = tracked('frozen', true);
    slow.latency.record(30);
    frozen.latency.record(30);
    fast.latency.record(5);
    const balancer = createBalancer('least-connections', seededRandom(7));
    const picks = () => Array.from({ length: 50 }, () => balancer.pick([slow.candidate, fast.candidate]).name);
    expect(new Set(picks())).toEqual(new Set(['fast']));
    // 30 s in which only the fast one serves reads.
    for (let i = 0; i < 300; i++) {
      clock.ms += 100;
      fast.latency.record(5);
    }
    expect(picks()).toContain('slow');
    const control = Array.from({ length: 50 }, () => balancer.pick([frozen.candidate, fast.candidate]).name);
    expect(new Set(control)).toEqual(new Set(['fast']));
  });

  it('never picks a busier replica while a less busy one is present (5 000 random vectors)', () => {
    const shape = seededRandom(2024);
    const balancer = createBalancer('least-connections', seededRandom(1));
    for (let run = 0; run < 5_000; run++) {
      // Small inFlight values make ties common, which is where a wrong tie-break would show.
      const pool = Array.from({ length: 1 + randomInt(shape, 8) }, (_, i) =>
        replica(`r${i}`, { inFlight: randomInt(shape, 4) }),
      );
      const min = Math.min(...pool.map((r) => r.inFlight));
      for (let k = 0; k < 4; k++) expect(balancer.pick(pool).inFlight).toBe(min);
    }
  });

  it('spreads load evenly over tied replicas', () => {
    const balancer = createBalancer('least-connections', seededRandom(3));
    const idle = replicas(4);
    for (const share of shares(() => balancer.pick(idle), 10_000).values()) expectShare(share, 25, 2);

    // Only the two least busy replicas are eligible, and they share evenly.
    const mixed = [
      replica('busy', { inFlight: 2 }),
      replica('a', { inFlight: 1 }),
      replica('b', { inFlight: 1 }),
      replica('busier', { inFlight: 5 }),
    ];
    const split = shares(() => balancer.pick(mixed), 10_000);
    expect([...split.keys()].sort()).toEqual(['a', 'b']);
    expectShare(split.get('a'), 50, 2);
  });

  it('passes over a clearly slower replica among equally busy ones, but treats similar ones as equal', () => {
    const balancer = createBalancer('least-connections', seededRandom(5));
    const slowed = [replica('fast', { latencyScoreMs: 0.6 }), replica('slow', { latencyScoreMs: 5.6 })];
    expect(shares(() => balancer.pick(slowed), 1_000).get('fast')).toBe(100);
    const similar = [replica('a', { latencyScoreMs: 0.5 }), replica('b', { latencyScoreMs: 0.7 })];
    expectShare(shares(() => balancer.pick(similar), 10_000).get('a'), 50, 2);
    // Busyness still comes first: a fast but busier replica loses to a slow idle one.
    const busyFast = [replica('fast', { latencyScoreMs: 0.5, inFlight: 1 }), replica('slow', { latencyScoreMs: 9 })];
    expect(balancer.pick(busyFast).name).toBe('slow');
    // The steady average decides when present: one slow read (a peak) does not lose the tie.
    const peaked = [
      { ...replica('fast', { latencyScoreMs: 8 }), averageLatencyMs: 0.5 },
      { ...replica('slow', { latencyScoreMs: 5.6 }), averageLatencyMs: 5.6 },
    ];
    expect(shares(() => balancer.pick(peaked), 1_000).get('fast')).toBe(100);
  });

  it('does not draw a random number when the minimum is unique', () => {
    const pool = [replica('a', { inFlight: 2 }), replica('b', { inFlight: 1 }), replica('c', { inFlight: 3 })];
    expect(createBalancer('least-connections', neverCalled).pick(pool).name).toBe('b');
  });
});

describe('latency (power of two choices)', () => {
  const score = (r: BalancerCandidate): number => r.latencyScoreMs * (r.inFlight + 1);

  it('with two candidates always picks the lower score', () => {
    const shape = seededRandom(11);
    const balancer = createBalancer('latency', seededRandom(12));
    for (let run = 0; run < 5_000; run++) {
      const pool = [
        replica('a', { latencyScoreMs: 1 + randomInt(shape, 100), inFlight: randomInt(shape, 5) }),
        replica('b', { latencyScoreMs: 1 + randomInt(shape, 100), inFlight: randomInt(shape, 5) }),
      ];
      const [a, b] = pool as [Replica, Replica];
      const picked = balancer.pick(pool);
      if (score(a) !== score(b)) expect(score(picked)).toBe(Math.min(score(a), score(b)));
      else if (a.inFlight !== b.inFlight) expect(picked.inFlight).toBe(Math.min(a.inFlight, b.inFlight));
    }
  });

  it('breaks an equal score by fewer in-flight reads, then spreads complete ties', () => {
    const balancer = createBalancer('latency', seededRandom(5));
    // 10 ms × (1 + 1) = 20 ms × (0 + 1): same score, b is less busy.
    const pool = [replica('a', { latencyScoreMs: 10, inFlight: 1 }), replica('b', { latencyScoreMs: 20 })];
    for (let i = 0; i < 100; i++) expect(balancer.pick(pool).name).toBe('b');

    const twins = [replica('a', { latencyScoreMs: 10 }), replica('b', { latencyScoreMs: 10 })];
    const split = shares(() => balancer.pick(twins), 10_000);
    expectShare(split.get('a'), 50, 2);
  });

  it('with three candidates never picks the worst: its rival is always a distinct, better replica', () => {
    const shape = seededRandom(21);
    const balancer = createBalancer('latency', seededRandom(22));
    for (let run = 0; run < 3_000; run++) {
      const pool = Array.from({ length: 3 }, (_, i) =>
        replica(`r${i}`, { latencyScoreMs: 1 + randomInt(shape, 100), inFlight: randomInt(shape, 4) }),
      );
      const scores = pool.map(score);
      const worst = Math.max(...scores);
      if (scores.filter((s) => s === worst).length > 1) continue;
      for (let k = 0; k < 5; k++) expect(score(balancer.pick(pool))).toBeLessThan(worst);
    }
  });

  it('favours lower scores in proportion to how many rivals each one beats', () => {
    const balancer = createBalancer('latency', seededRandom(31));
    const three = [10, 20, 30].map((ms) => replica(`${ms}ms`, { latencyScoreMs: ms }));
    const split3 = shares(() => balancer.pick(three), 30_000);
    // Of the three equally likely pairs, the best wins two and the middle one wins one.
    expectShare(split3.get('10ms'), 200 / 3, 2);
    expectShare(split3.get('20ms'), 100 / 3, 2);
    expect(split3.get('30ms')).toBeUndefined();

    const eight = [1, 2, 3, 4, 5, 6, 7, 8].map((ms) => replica(`${ms}ms`, { latencyScoreMs: ms }));
    const split8 = shares(() => balancer.pick(eight), 40_000);
    // Rank k (0 = best) wins against the n - 1 - k worse replicas out of n(n - 1) / 2 pairs.
    eight.forEach((r, k) => {
      expectShare(split8.get(r.name), (100 * (7 - k)) / 28, 1.5);
    });
  });

  it('weighs in-flight reads into the score', () => {
    const balancer = createBalancer('latency', seededRandom(41));
    // Fast but swamped (5 × 11 = 55) loses to slower and idle (20 × 1).
    const pool = [replica('fast', { latencyScoreMs: 5, inFlight: 10 }), replica('idle', { latencyScoreMs: 20 })];
    for (let i = 0; i < 50; i++) expect(balancer.pick(pool).name).toBe('idle');
  });
});

describe('round-robin', () => {
  it('cycles through the candidates by position', () => {
    const balancer = createBalancer('round-robin');
    const pool = replicas(3);
    expect(Array.from({ length: 7 }, () => balancer.pick(pool).name)).toEqual([
      'r0',
      'r1',
      'r2',
      'r0',
      'r1',
      'r2',
      'r0',
    ]);
  });

  it('stays in range when membership shrinks or grows between picks', () => {
    const balancer = createBalancer('round-robin');
    const five = replicas(5);
    expect([0, 1, 2, 3].map(() => balancer.pick(five).name)).toEqual(['r0', 'r1', 'r2', 'r3']);
    const two = five.slice(0, 2);
    expect([0, 1, 2].map(() => balancer.pick(two).name)).toEqual(['r0', 'r1', 'r0']);
    expect([0, 1, 2, 3].map(() => balancer.pick(five).name)).toEqual(['r1', 'r2', 'r3', 'r4']);

    const shape = seededRandom(8);
    for (let i = 0; i < 5_000; i++) {
      const pool = five.slice(0, 1 + randomInt(shape, 5));
      expect(pool).toContain(balancer.pick(pool));
    }
  });

  it('gives each replica an equal share', () => {
    const balancer = createBalancer('round-robin');
    const pool = replicas(4);
    for (const share of shares(() => balancer.pick(pool), 1_000).values()) expect(share).toBe(25);
  });
});

describe('random', () => {
  it('is roughly uniform (chi-square, p = 0.001, and each share within ±3 pp)', () => {
    const balancer = createBalancer('random', seededRandom(51));
    const pool = replicas(5);
    const picks = 10_000;
    const split = shares(() => balancer.pick(pool), picks);
    expect(split.size).toBe(5);
    let chiSquare = 0;
    for (const share of split.values()) {
      expectShare(share, 20, 3);
      const observed = (share / 100) * picks;
      const expected = picks / 5;
      chiSquare += (observed - expected) ** 2 / expected;
    }
    // Critical value of the chi-square distribution with 4 degrees of freedom at p = 0.001.
    expect(chiSquare).toBeLessThan(18.47);
  });
});

describe('weighted', () => {
  it('splits 10 000 picks 1:2:7 within ±2 percentage points', () => {
    const balancer = createBalancer('weighted', seededRandom(61));
    const pool = [replica('one', { weight: 1 }), replica('two', { weight: 2 }), replica('seven', { weight: 7 })];
    const split = shares(() => balancer.pick(pool), 10_000);
    expectShare(split.get('one'), 10, 2);
    expectShare(split.get('two'), 20, 2);
    expectShare(split.get('seven'), 70, 2);
  });

  it('handles fractional weights', () => {
    const balancer = createBalancer('weighted', seededRandom(62));
    const pool = [replica('a', { weight: 0.25 }), replica('b', { weight: 0.75 })];
    expectShare(shares(() => balancer.pick(pool), 10_000).get('a'), 25, 2);
  });

  it('never picks a replica whose weight is unusable, and spreads evenly if none is usable', () => {
    const balancer = createBalancer('weighted', seededRandom(63));
    const pool = [
      replica('zero', { weight: 0 }),
      replica('nan', { weight: Number.NaN }),
      replica('ok', { weight: 1 }),
      replica('negative', { weight: -1 }),
    ];
    for (let i = 0; i < 1_000; i++) expect(balancer.pick(pool).name).toBe('ok');

    const broken = [replica('a', { weight: 0 }), replica('b', { weight: 0 })];
    expect(shares(() => balancer.pick(broken), 1_000).size).toBe(2);
  });
});

describe('custom function', () => {
  it('accepts a returned name', () => {
    const balancer = createBalancer((candidates) => (candidates.length > 2 ? 'r2' : 'r0'));
    expect(balancer.pick(replicas(3)).name).toBe('r2');
  });

  it('accepts a returned candidate and hands back the caller’s own object', () => {
    const pool = replicas(4);
    const balancer = createBalancer((candidates) => candidates.reduce((a, b) => (b.inFlight > a.inFlight ? b : a)));
    (pool[3] as Replica).inFlight = 9;
    expect(balancer.pick(pool)).toBe(pool[3]);
  });

  it('receives the candidates and the balancer’s random source', () => {
    const random = seededRandom(71);
    const pool = replicas(3);
    const calls: Array<[readonly BalancerCandidate[], () => number]> = [];
    const choose: BalancerFunction = (candidates, rnd) => {
      calls.push([candidates, rnd]);
      return 'r1';
    };
    createBalancer(choose, random).pick(pool);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toBe(pool);
    expect(calls[0]?.[1]).toBe(random);
  });

  it('throws INVALID_OPTION naming what a bad return was', () => {
    const pool = replicas(2);
    expectInvalidOption(() => createBalancer(() => 'r9').pick(pool), '"r9"', 'r0, r1');
    expectInvalidOption(() => createBalancer(() => ({ ...replica('r0') })).pick(pool), 'a copy of a candidate');
    expectInvalidOption(() => createBalancer(() => replica('stranger')).pick(pool), 'stranger');
    expectInvalidOption(
      () => createBalancer((() => undefined) as unknown as BalancerFunction).pick(pool),
      'returned undefined',
    );
    expectInvalidOption(
      () => createBalancer((async () => 'r0') as unknown as BalancerFunction).pick(pool),
      'must be synchronous',
    );
  });

  it('lets an error thrown by the function through unchanged', () => {
    const boom = new Error('boom');
    const balancer = createBalancer(() => {
      throw boom;
    });
    expect(() => balancer.pick(replicas(2))).toThrow(boom);
  });
});
