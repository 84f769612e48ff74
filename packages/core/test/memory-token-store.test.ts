import { describe, expect, it } from 'vitest';
import { MemoryTokenStore } from '../src/memory-token-store.js';
import { expectCode, rejection } from './assertions.js';

function clock(start = 1_000): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return {
    now: () => time,
    advance: (ms) => {
      time += ms;
    },
  };
}

describe('MemoryTokenStore', () => {
  it('reads undefined for an unknown key', async () => {
    expect(await new MemoryTokenStore().get('nobody')).toBeUndefined();
  });

  it('max-merges: a key never moves backwards', async () => {
    const store = new MemoryTokenStore();
    expect(await store.raise('s', 10n, 1_000)).toBe(10n);
    expect(await store.raise('s', 5n, 1_000)).toBe(10n);
    expect(await store.get('s')).toBe(10n);
    expect(await store.raise('s', 0xffff_ffff_0000_0002n, 1_000)).toBe(0xffff_ffff_0000_0002n);
    expect(await store.raise('s', 0xffff_ffff_0000_0001n, 1_000)).toBe(0xffff_ffff_0000_0002n);
    expect(await store.get('s')).toBe(0xffff_ffff_0000_0002n);
  });

  it('keeps keys apart', async () => {
    const store = new MemoryTokenStore();
    await store.raise('a', 1n, 1_000);
    await store.raise('b', 2n, 1_000);
    expect(await store.get('a')).toBe(1n);
    expect(await store.get('b')).toBe(2n);
  });

  it('accepts the whole LSN range, 0 and 2^64-1 included', async () => {
    const store = new MemoryTokenStore();
    expect(await store.raise('zero', 0n, 1_000)).toBe(0n);
    expect(await store.get('zero')).toBe(0n);
    expect(await store.raise('max', 0xffff_ffff_ffff_ffffn, 1_000)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('expires a key after its TTL', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ now: time.now });
    await store.raise('s', 7n, 100);
    time.advance(99);
    expect(await store.get('s')).toBe(7n);
    time.advance(1);
    expect(await store.get('s')).toBeUndefined();
  });

  it('refreshes the TTL on every raise, also when the LSN does not move', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ now: time.now });
    await store.raise('s', 7n, 100);
    time.advance(80);
    expect(await store.raise('s', 3n, 100)).toBe(7n);
    time.advance(80);
    expect(await store.get('s')).toBe(7n);
    time.advance(20);
    expect(await store.get('s')).toBeUndefined();
  });

  it('does not refresh the TTL on get', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ now: time.now });
    await store.raise('s', 7n, 100);
    time.advance(60);
    expect(await store.get('s')).toBe(7n);
    time.advance(40);
    expect(await store.get('s')).toBeUndefined();
  });

  it('does not merge with an expired value', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ now: time.now });
    await store.raise('s', 50n, 100);
    time.advance(100);
    expect(await store.raise('s', 10n, 100)).toBe(10n);
    expect(await store.get('s')).toBe(10n);
  });

  it('uses the latest TTL, even when it is shorter', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ now: time.now });
    await store.raise('s', 5n, 10_000);
    await store.raise('s', 5n, 10);
    time.advance(10);
    expect(await store.get('s')).toBeUndefined();
  });

  it('evicts the least recently used key past maxKeys', async () => {
    const store = new MemoryTokenStore({ maxKeys: 2 });
    await store.raise('a', 1n, 1_000);
    await store.raise('b', 2n, 1_000);
    await store.raise('c', 3n, 1_000);
    expect(await store.get('a')).toBeUndefined();
    expect(await store.get('b')).toBe(2n);
    expect(await store.get('c')).toBe(3n);
  });

  it('counts a get as a use', async () => {
    const store = new MemoryTokenStore({ maxKeys: 2 });
    await store.raise('a', 1n, 1_000);
    await store.raise('b', 2n, 1_000);
    expect(await store.get('a')).toBe(1n);
    await store.raise('c', 3n, 1_000);
    expect(await store.get('a')).toBe(1n);
    expect(await store.get('b')).toBeUndefined();
    expect(await store.get('c')).toBe(3n);
  });

  it('counts raising an existing key as a use, without growing', async () => {
    const store = new MemoryTokenStore({ maxKeys: 2 });
    await store.raise('a', 1n, 1_000);
    await store.raise('b', 2n, 1_000);
    await store.raise('a', 4n, 1_000);
    expect(await store.get('b')).toBe(2n);
    expect(await store.get('a')).toBe(4n);
    await store.raise('c', 3n, 1_000);
    expect(await store.get('b')).toBeUndefined();
    expect(await store.get('a')).toBe(4n);
  });

  it('evicts abandoned expired keys before live ones', async () => {
    const time = clock();
    const store = new MemoryTokenStore({ maxKeys: 2, now: time.now });
    await store.raise('abandoned', 1n, 10);
    time.advance(10);
    await store.raise('live', 2n, 1_000);
    await store.raise('new', 3n, 1_000);
    expect(await store.get('live')).toBe(2n);
    expect(await store.get('new')).toBe(3n);
    expect(await store.get('abandoned')).toBeUndefined();
  });

  it('forgets everything on close', async () => {
    const store = new MemoryTokenStore();
    await store.raise('s', 1n, 1_000);
    await store.close();
    expect(await store.get('s')).toBeUndefined();
  });

  it('is max-merge consistent under interleaved raises', async () => {
    const store = new MemoryTokenStore();
    const values = Array.from({ length: 200 }, (_, i) => BigInt((i * 7919) % 997));
    const results = await Promise.all(values.map((lsn) => store.raise('s', lsn, 1_000)));
    const max = values.reduce((a, b) => (a > b ? a : b));
    expect(await store.get('s')).toBe(max);
    for (let i = 1; i < results.length; i++) expect(results[i]).toBeGreaterThanOrEqual(results[i - 1] as bigint);
  });

  describe('validation', () => {
    it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10' as unknown as number])(
      'rejects maxKeys %s',
      (maxKeys) => {
        let thrown: unknown;
        try {
          new MemoryTokenStore({ maxKeys });
        } catch (error) {
          thrown = error;
        }
        expectCode(thrown, 'INVALID_OPTION');
        expect((thrown as Error).message).toContain('maxKeys');
      },
    );

    it('rejects a now that is not a function', () => {
      expect(() => new MemoryTokenStore({ now: 5 as unknown as () => number })).toThrow(/Invalid option now/);
    });

    it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY, '100' as unknown as number])(
      'rejects ttlMs %s',
      async (ttlMs) => {
        const store = new MemoryTokenStore();
        const error = await rejection(store.raise('s', 1n, ttlMs));
        expectCode(error, 'INVALID_OPTION');
        expect((error as Error).message).toContain('ttlMs');
        expect(await store.get('s')).toBeUndefined();
      },
    );

    it.each(['', 5 as unknown as string, undefined as unknown as string])('rejects key %s', async (key) => {
      const store = new MemoryTokenStore();
      expectCode(await rejection(store.get(key)), 'INVALID_OPTION');
      expectCode(await rejection(store.raise(key, 1n, 1_000)), 'INVALID_OPTION');
    });

    it.each([-1n, 2n ** 64n, 5 as unknown as bigint])('rejects LSN %s', async (lsn) => {
      const store = new MemoryTokenStore();
      expectCode(await rejection(store.raise('s', lsn, 1_000)), 'INVALID_LSN');
    });

    it('keeps keys out of error messages', async () => {
      const store = new MemoryTokenStore();
      const error = await rejection(store.raise('session-secret', 1n, -1));
      expect((error as Error).message).not.toContain('session-secret');
    });
  });
});
