import { describe, expect, it } from 'vitest';
import { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF, validateBackoff } from '../src/backoff.js';
import { seededRandom } from '../src/balancers.js';
import { expectInvalidOption } from './assertions.js';

const noJitter: BackoffOptions = { ...DEFAULT_BACKOFF, jitter: 0 };

describe('backoffDelay', () => {
  it('doubles from 250 ms and caps at 30 s for attempts 0..10 without jitter', () => {
    expect(Array.from({ length: 11 }, (_, attempt) => backoffDelay(attempt, noJitter))).toEqual([
      250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000,
    ]);
  });

  it('does not draw a random number when jitter is 0', () => {
    expect(
      backoffDelay(3, noJitter, () => {
        throw new Error('random must not be called');
      }),
    ).toBe(2_000);
  });

  it('removes at most `jitter` of each delay', () => {
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0)).toBe(1_000);
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.5)).toBe(900);
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.9999999)).toBeCloseTo(800, 3);

    const random = seededRandom(5);
    for (let attempt = 0; attempt < 12; attempt++) {
      const full = backoffDelay(attempt, noJitter);
      for (let i = 0; i < 200; i++) {
        const delay = backoffDelay(attempt, DEFAULT_BACKOFF, random);
        expect(delay).toBeGreaterThan(full * 0.8);
        expect(delay).toBeLessThanOrEqual(full);
      }
    }
  });

  it('can jitter all the way down with jitter 1, never below zero', () => {
    const options = validateBackoff({ jitter: 1 }, 'backoff');
    expect(backoffDelay(0, options, () => 0.75)).toBe(62.5);
    expect(backoffDelay(0, options, () => 0)).toBe(250);
    expect(backoffDelay(0, options, () => 0.9999999)).toBeGreaterThanOrEqual(0);
  });

  it('gives maxMs for huge attempts, without Infinity or NaN', () => {
    for (const attempt of [1_000, 1e6, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY]) {
      expect(backoffDelay(attempt, noJitter)).toBe(30_000);
      const jittered = backoffDelay(attempt, DEFAULT_BACKOFF, seededRandom(1));
      expect(Number.isFinite(jittered)).toBe(true);
      expect(jittered).toBeGreaterThan(24_000);
      expect(jittered).toBeLessThanOrEqual(30_000);
    }
  });

  it('treats negative and NaN attempts as the first', () => {
    expect(backoffDelay(-3, noJitter)).toBe(250);
    expect(backoffDelay(Number.NaN, noJitter)).toBe(250);
  });

  it('keeps a constant delay with multiplier 1', () => {
    const options = { ...validateBackoff({ multiplier: 1, initialMs: 100 }, 'backoff'), jitter: 0 };
    expect([0, 1, 50, 1e6].map((attempt) => backoffDelay(attempt, options))).toEqual([100, 100, 100, 100]);
  });
});

describe('validateBackoff', () => {
  it('returns the frozen defaults for undefined', () => {
    expect(validateBackoff(undefined, 'backoff')).toBe(DEFAULT_BACKOFF);
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 250, maxMs: 30_000, multiplier: 2, jitter: 0.2 });
    expect(Object.isFrozen(DEFAULT_BACKOFF)).toBe(true);
  });

  it('merges a partial object over the defaults and freezes the result', () => {
    const options = validateBackoff({ initialMs: 100, jitter: 0 }, 'backoff');
    expect(options).toEqual({ initialMs: 100, maxMs: 30_000, multiplier: 2, jitter: 0 });
    expect(Object.isFrozen(options)).toBe(true);
    expect(validateBackoff({ initialMs: undefined } as unknown as Partial<BackoffOptions>, 'backoff')).toEqual(
      DEFAULT_BACKOFF,
    );
  });

  it('accepts the edges: maxMs equal to initialMs, jitter 0 and 1', () => {
    expect(validateBackoff({ initialMs: 500, maxMs: 500 }, 'b').maxMs).toBe(500);
    expect(validateBackoff({ jitter: 0 }, 'b').jitter).toBe(0);
    expect(validateBackoff({ jitter: 1 }, 'b').jitter).toBe(1);
  });

  it('names optionName.field and the value received for each bad field', () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ initialMs: 0 }, 'health.backoff.initialMs', 'received 0'],
      [{ initialMs: -1 }, 'health.backoff.initialMs', '-1'],
      [{ initialMs: Number.NaN }, 'health.backoff.initialMs', 'NaN'],
      [{ initialMs: '250' }, 'health.backoff.initialMs', '"250"'],
      [{ maxMs: Number.POSITIVE_INFINITY }, 'health.backoff.maxMs', 'Infinity'],
      [{ initialMs: 1_000, maxMs: 500 }, 'health.backoff.maxMs', '500'],
      [{ multiplier: 0.5 }, 'health.backoff.multiplier', '0.5'],
      [{ jitter: 1.5 }, 'health.backoff.jitter', '1.5'],
      [{ jitter: -0.1 }, 'health.backoff.jitter', '-0.1'],
      [{ initalMs: 100 }, 'health.backoff.initalMs', 'initialMs'],
    ];
    for (const [options, option, received] of cases) {
      expectInvalidOption(
        () => validateBackoff(options as Partial<BackoffOptions>, 'health.backoff'),
        option,
        received,
      );
    }
  });

  it('rejects something that is not an object, naming the option', () => {
    for (const bad of [null, 5, 'fast', [250]]) {
      expectInvalidOption(
        () => validateBackoff(bad as unknown as Partial<BackoffOptions>, 'retryBackoff'),
        'retryBackoff',
      );
    }
  });
});
