import { getRandomValues } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../testkit/src/redis-server.js';
import { type RedisLike, redisTokenStore } from '../src/redis.js';
import type { TokenStore } from '../src/token-store.js';
import { expectCode, rejection } from './assertions.js';

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const never = (): Promise<never> => new Promise(() => {});

/** The LSN a store holds for `key`, whatever shape its answer takes. */
async function lsnOf(store: TokenStore, key: string): Promise<bigint | undefined> {
  const found = await store.get(key, 60_000);
  return typeof found === 'object' ? found.lsn : found;
}

/** The Redis key a store keeps `key` under (the hash tag in front depends on the key). */
async function storedKey(redis: Redis, key: string, prefix = 'lagless:lsn:'): Promise<string> {
  const [found] = await redis.keys(`${prefix}{*}k:${key}`);
  if (found === undefined) throw new Error(`no Redis key for ${key}`);
  return found;
}

describe('redisTokenStore with a fake client', () => {
  it('rejects with TOKEN_STORE_UNAVAILABLE when a call outlives timeoutMs', async () => {
    const store = redisTokenStore({ get: never, eval: never }, { timeoutMs: 20 });
    const started = Date.now();
    const error = await rejection(store.get('s'));
    expectCode(error, 'TOKEN_STORE_UNAVAILABLE');
    expect((error as Error).message).toContain('timed out after 20 ms');
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    expectCode(await rejection(store.raise('s', 1n, 1_000)), 'TOKEN_STORE_UNAVAILABLE');
  });

  it('absorbs a late failure of a call that already timed out', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const late = (): Promise<never> =>
        sleep(40).then(() => {
          throw new Error('late');
        });
      const store = redisTokenStore({ get: late, eval: late }, { timeoutMs: 5 });
      expectCode(await rejection(store.get('s')), 'TOKEN_STORE_UNAVAILABLE');
      expectCode(await rejection(store.raise('s', 1n, 1_000)), 'TOKEN_STORE_UNAVAILABLE');
      await sleep(80);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('wraps errors, thrown or rejected, keeping the cause and hiding passwords', async () => {
    const failure = new Error('connect ECONNREFUSED redis://default:hunter2@cache:6379');
    const store = redisTokenStore({
      get: () => Promise.reject(failure),
      eval: () => {
        throw failure;
      },
    });
    for (const error of [await rejection(store.get('s')), await rejection(store.raise('s', 1n, 1_000))]) {
      expectCode(error, 'TOKEN_STORE_UNAVAILABLE');
      expect((error as Error).cause).toBe(failure);
      expect((error as Error).message).toContain('ECONNREFUSED');
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('sends 16 uppercase hex digits and a whole-millisecond TTL', async () => {
    const calls: unknown[][] = [];
    const store = redisTokenStore(
      {
        get: async () => null,
        eval: async (...args: unknown[]) => {
          calls.push(args);
          return '00000016B374D848';
        },
      },
      { prefix: 'p:' },
    );
    expect(await store.raise('s', 0x16_b374_d848n, 1.2)).toBe(0x16_b374_d848n);
    expect(calls[0]?.slice(1, 2)).toEqual([1]);
    expect(calls[0]?.[2]).toMatch(/^p:\{[0-9]+\}k:s$/);
    expect(calls[0]?.slice(3)).toEqual(['00000016B374D848', 2]);
  });

  it('reads CONFIG GET replies in RESP2 and RESP3 shapes', async () => {
    const reply = (policy: string) => ({
      get: async () => null,
      eval: async () => null,
      config: async (_: 'GET', name: string) =>
        name === 'maxmemory-policy' ? policy : name === 'maxmemory' ? '0' : undefined,
    });
    const resp2 = redisTokenStore({
      ...reply(''),
      config: async (_: 'GET', name: string) => [name, name === 'maxmemory' ? '0' : 'allkeys-lfu'],
    });
    const resp3 = redisTokenStore({
      ...reply(''),
      config: async (_: 'GET', name: string) => ({ [name]: name === 'maxmemory' ? '0' : 'allkeys-lfu' }),
    });
    for (const store of [resp2, resp3]) {
      expect(await store.check()).toEqual([expect.stringContaining('maxmemory-policy is allkeys-lfu')]);
    }
  });

  it('treats a reply that is not a stored LSN as unavailable, not as no token', async () => {
    const store = redisTokenStore({ get: async () => 'garbage', eval: async () => 42 });
    expectCode(await rejection(store.get('s')), 'TOKEN_STORE_UNAVAILABLE');
    expectCode(await rejection(store.raise('s', 1n, 1_000)), 'TOKEN_STORE_UNAVAILABLE');
  });

  describe('validation', () => {
    const fake: RedisLike = { get: async () => null, eval: async () => null };

    it.each([
      [{ prefix: 5 as unknown as string }, 'prefix'],
      [{ prefix: 'app{1}:' }, 'prefix'],
      [{ shards: 0 }, 'shards'],
      [{ shards: 1.5 }, 'shards'],
      [{ detectLoss: 'yes' as unknown as boolean }, 'detectLoss'],
      [{ timeoutMs: 0 }, 'timeoutMs'],
      [{ timeoutMs: -1 }, 'timeoutMs'],
      [{ timeoutMs: Number.NaN }, 'timeoutMs'],
      [{ timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs'],
      [{ timeoutMs: 2 ** 31 }, 'timeoutMs'],
    ])('rejects %o eagerly', (options, name) => {
      let thrown: unknown;
      try {
        redisTokenStore(fake, options);
      } catch (error) {
        thrown = error;
      }
      expectCode(thrown, 'INVALID_OPTION');
      expect((thrown as Error).message).toContain(`option ${name}`);
    });

    it.each([null, undefined, {}, { get: async () => null }])('rejects client %o', (client) => {
      expect(() => redisTokenStore(client as unknown as RedisLike)).toThrow(
        /Invalid option redis: expected an ioredis/,
      );
    });

    it('validates keys, LSNs and TTLs before any call', async () => {
      const store = redisTokenStore({
        get: () => {
          throw new Error('must not be called');
        },
        eval: () => {
          throw new Error('must not be called');
        },
      });
      expectCode(await rejection(store.get('')), 'INVALID_OPTION');
      expectCode(await rejection(store.raise('', 1n, 1_000)), 'INVALID_OPTION');
      expectCode(await rejection(store.raise('s', -1n, 1_000)), 'INVALID_LSN');
      expectCode(await rejection(store.raise('s', 2n ** 64n, 1_000)), 'INVALID_LSN');
      expectCode(await rejection(store.raise('s', 1n, 0)), 'INVALID_OPTION');
      expectCode(await rejection(store.raise('s', 1n, Number.POSITIVE_INFINITY)), 'INVALID_OPTION');
    });
  });
});

describe('redisTokenStore against redis-server', () => {
  let server: RedisServer | undefined;
  const clients: Redis[] = [];

  function connect(options: RedisOptions = {}): Redis {
    if (server === undefined) throw new Error('redis-server did not start');
    const client = new Redis(server.url, options);
    // While Redis is down ioredis emits an error per failed reconnect; without a listener it logs each one.
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });

  it('round-trips LSNs above 2^53 exactly', async () => {
    const store = redisTokenStore(connect());
    const low = 0xffff_ffff_0000_0001n;
    const high = 0xffff_ffff_0000_0002n;
    expect(await lsnOf(store, 'exact')).toBeUndefined();
    expect(await store.raise('exact', low, 60_000)).toBe(low);
    expect(await lsnOf(store, 'exact')).toBe(low);
    expect(await store.raise('exact', high, 60_000)).toBe(high);
    expect(await store.raise('exact', low, 60_000)).toBe(high);
    expect(await lsnOf(store, 'exact')).toBe(high);
    // As doubles both would be 18446744069414584000: a float comparison could not tell them apart.
    expect(Number(low)).toBe(Number(high));
  });

  it('compares across the 32-bit halves, at both ends of the range', async () => {
    const store = redisTokenStore(connect());
    expect(await store.raise('halves', 0x1_0000_0000n, 60_000)).toBe(0x1_0000_0000n);
    expect(await store.raise('halves', 0xffff_ffffn, 60_000)).toBe(0x1_0000_0000n);
    expect(await store.raise('halves', 0x1_0000_0001n, 60_000)).toBe(0x1_0000_0001n);
    expect(await store.raise('ends', 0n, 60_000)).toBe(0n);
    expect(await store.raise('ends', 0xffff_ffff_ffff_ffffn, 60_000)).toBe(0xffff_ffff_ffff_ffffn);
    expect(await store.raise('ends', 0xffff_ffff_ffff_fffen, 60_000)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('stores a 16-digit hex string under the prefixed key', async () => {
    const redis = connect();
    const store = redisTokenStore(redis);
    await store.raise('layout', 0x16_b374_d848n, 60_000);
    const key = await storedKey(redis, 'layout');
    expect(key).toMatch(/^lagless:lsn:\{[0-9]+\}k:layout$/);
    expect(await redis.get(key)).toBe('00000016B374D848');
  });

  it('max-merges under concurrent writers on separate connections', async () => {
    // 4,000 scripts in flight on a shared machine: the timeout is not what this test is about.
    const writers = Array.from({ length: 8 }, () => redisTokenStore(connect(), { timeoutMs: 30_000 }));
    const written: bigint[] = [];
    const perWriter = await Promise.all(
      writers.map(async (store) => {
        const lsns = [...getRandomValues(new BigUint64Array(500))];
        written.push(...lsns);
        const resolved: Array<{ lsn: bigint; result: bigint }> = [];
        await Promise.all(
          lsns.map((lsn) =>
            store.raise('shared', lsn, 60_000).then((result) => {
              resolved.push({ lsn, result });
            }),
          ),
        );
        return resolved;
      }),
    );
    const max = written.reduce((a, b) => (a > b ? a : b));
    expect(await lsnOf(writers[0] as TokenStore, 'shared')).toBe(max);
    for (const resolved of perWriter) {
      expect(resolved).toHaveLength(500);
      let previous = 0n;
      for (const { lsn, result } of resolved) {
        expect(result >= lsn, `raise(${lsn}) returned ${result}`).toBe(true);
        expect(result >= previous, `${result} resolved after ${previous}`).toBe(true);
        previous = result;
      }
    }
  });

  it('expires a key after its TTL', async () => {
    const redis = connect();
    const store = redisTokenStore(redis);
    await store.raise('short', 5n, 100);
    expect(await lsnOf(store, 'short')).toBe(5n);
    await waitFor('the key to expire', async () => (await lsnOf(store, 'short')) === undefined, 5_000);
    expect(await redis.keys('lagless:lsn:{*}k:short')).toEqual([]);
  });

  it('refreshes the TTL on a raise that does not move the LSN', async () => {
    const redis = connect();
    const store = redisTokenStore(redis);
    await store.raise('refresh', 9n, 5_000);
    expect(await store.raise('refresh', 1n, 60_000)).toBe(9n);
    expect(await redis.pttl(await storedKey(redis, 'refresh'))).toBeGreaterThan(5_000);
  });

  it('isolates prefixes', async () => {
    const redis = connect();
    const one = redisTokenStore(redis, { prefix: 'app1:' });
    const two = redisTokenStore(redis, { prefix: 'app2:' });
    await one.raise('user-1', 100n, 60_000);
    expect(await lsnOf(two, 'user-1')).toBeUndefined();
    expect(await two.raise('user-1', 5n, 60_000)).toBe(5n);
    expect(await lsnOf(one, 'user-1')).toBe(100n);
    expect(await lsnOf(redisTokenStore(redis), 'user-1')).toBeUndefined();
  });

  it('overwrites a value it cannot parse instead of trusting it', async () => {
    const redis = connect();
    const store = redisTokenStore(redis);
    await store.raise('foreign', 1n, 60_000);
    await redis.set(await storedKey(redis, 'foreign'), 'ZZZZZZZZZZZZZZZZ');
    expectCode(await rejection(store.get('foreign')), 'TOKEN_STORE_UNAVAILABLE');
    expect(await store.raise('foreign', 3n, 60_000)).toBe(3n);
    expect(await lsnOf(store, 'foreign')).toBe(3n);
  });

  it('rejects with TOKEN_STORE_UNAVAILABLE while Redis is down, and recovers when it is back', async () => {
    if (server === undefined) throw new Error('redis-server did not start');
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      // A default client queues commands while it reconnects; a fail-fast one rejects them at once.
      const failFastClient = connect({ enableOfflineQueue: false, maxRetriesPerRequest: 0 });
      // Without an offline queue, even commands sent before the first connection completes fail.
      await waitFor('the fail-fast client to connect', async () => failFastClient.status === 'ready');
      const queueing = redisTokenStore(connect(), { timeoutMs: 250 });
      const failFast = redisTokenStore(failFastClient, { timeoutMs: 250 });
      expect(await queueing.raise('outage', 1n, 60_000)).toBe(1n);
      expect(await lsnOf(failFast, 'outage')).toBe(1n);

      await server.stop();
      for (const store of [queueing, failFast]) {
        const started = Date.now();
        const errors = [await rejection(store.get('outage')), await rejection(store.raise('outage', 2n, 60_000))];
        for (const error of errors) expectCode(error, 'TOKEN_STORE_UNAVAILABLE');
        expect(Date.now() - started).toBeLessThan(5_000);
      }

      await server.start();
      for (const store of [queueing, failFast]) {
        await waitFor('the client to reconnect', () =>
          store.get('outage').then(
            () => true,
            () => false,
          ),
        );
      }
      // Nothing is persisted, so the restarted server starts empty; but the raise the queueing client
      // still held when it timed out may have been sent once it reconnected. Harmless: it only raises.
      expect([undefined, 2n]).toContain(await lsnOf(queueing, 'outage'));
      expect(await queueing.raise('outage', 7n, 60_000)).toBe(7n);
      expect(await lsnOf(failFast, 'outage')).toBe(7n);
      await sleep(50);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  describe('loss detection', () => {
    it("reports a shard's first use, and a flush, as a loss until a floor is recorded", async () => {
      const redis = connect();
      await redis.flushall();
      const store = redisTokenStore(redis, { shards: 1 });
      const first = await store.get('a', 60_000);
      expect(first).toMatchObject({ lsn: undefined, loss: { floor: undefined, confirmed: false } });
      const epoch = first.loss?.epoch ?? '';
      expect(epoch).toMatch(/^[0-9]+\.[0-9]+$/);
      await store.recordLossFloor?.('a', epoch, 0x500n);
      // Within the TTL window every key of the shard carries the floor, present or not.
      await store.raise('b', 0x900n, 60_000);
      expect(await store.get('b', 60_000)).toEqual({ lsn: 0x900n, loss: { epoch, floor: 0x500n, confirmed: false } });
      // A floor recorded for an older loss never lands on a newer marker.
      await redis.flushall();
      const second = await store.get('a', 60_000);
      expect(second.loss).toMatchObject({ floor: undefined, confirmed: true });
      await store.recordLossFloor?.('a', epoch, 0x1n);
      expect((await store.get('a', 60_000)).loss?.floor).toBeUndefined();
    });

    it('a marker older than the TTL window no longer matters; detection can be turned off', async () => {
      const redis = connect();
      await redis.flushall();
      const store = redisTokenStore(redis, { shards: 1 });
      await store.get('a', 60_000);
      const [marker] = await redis.keys('lagless:lsn:{0}epoch');
      await redis.set(marker ?? '', '1000000000.000001:0000000000000500');
      expect(await store.get('a', 60_000)).toEqual({ lsn: undefined });
      await redis.flushall();
      const blind = redisTokenStore(redis, { shards: 1, detectLoss: false });
      expect(await blind.get('a', 60_000)).toEqual({ lsn: undefined });
      expect(await redis.keys('*epoch')).toEqual([]);
    });

    it('warns when the eviction policy can drop keys without a TTL', async () => {
      const redis = connect();
      const store = redisTokenStore(redis);
      expect(await store.check?.()).toEqual([]);
      await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
      try {
        expect(await store.check?.()).toEqual([expect.stringContaining('maxmemory-policy is allkeys-lru')]);
      } finally {
        await redis.config('SET', 'maxmemory-policy', 'noeviction');
      }
    });
  });
});
