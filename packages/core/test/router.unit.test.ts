// Router logic with in-memory fake nodes: no database. Integration tests cover the real thing.
import { describe, expect, it } from 'vitest';
import { CoalescedProbe } from '../src/coalesced-probe.js';
import {
  describeFailure,
  isConnectionLevelError,
  isNotConnectedError,
  isRecoveryConflict,
} from '../src/connection-errors.js';
import { createRouter, isLaglessError, LaglessError, seededRandom } from '../src/index.js';
import { PrimaryLsnHistory } from '../src/lag.js';
import { FakeCluster, waitFor } from './fake-cluster.js';

function setup(replicaCount = 2, options: Record<string, unknown> = {}) {
  const fake = new FakeCluster();
  const replicas = Array.from({ length: replicaCount }, (_, i) => fake.replica(`r${i + 1}`));
  const router = fake.router(replicas, { random: seededRandom(1), ...options });
  return { fake, router };
}

const whereRead = (router: ReturnType<typeof setup>['router']) => router.read(async (client) => client);

describe('options', () => {
  it.each([
    [
      { waitTimeoutMs: -1 },
      /Invalid option waitTimeoutMs: expected a non-negative number of milliseconds, received -1/,
    ],
    [{ consistency: 'strong' }, /consistency: expected 'none' \| 'session' \| 'global', received "strong"/],
    [{ onTimeout: 'wait' }, /Invalid option onTimeout: expected/],
    [{ balancer: 'fastest' }, /balancer/],
    [
      { tokenSecret: 'short' },
      /Invalid option tokenSecret: expected a string or Uint8Array of at least 16 bytes, received a string of 5 bytes/,
    ],
    [{ tokenSecret: [] }, /Invalid option tokenSecret: expected a secret or a non-empty list/],
    [{ tokenSecret: ['sixteen-byte-secret!', 'short'] }, /Invalid option tokenSecret\[1\]/],
    [{ tokenStore: {} }, /Invalid option tokenStore: expected a TokenStore/],
    [{ replicaTimeoutMs: 0 }, /Invalid option replicaTimeoutMs: expected a positive number/],
    [{ systemIdentifier: 'abc' }, /Invalid option systemIdentifier/],
    [{ logger: 'stderr' }, /Invalid option logger: expected a function/],
  ])('rejects %o with INVALID_OPTION', (options, message) => {
    const error = (() => {
      try {
        setup(1, options);
      } catch (e) {
        return e;
      }
    })();
    expect(isLaglessError(error, 'INVALID_OPTION')).toBe(true);
    expect((error as Error).message).toMatch(message);
  });

  it('rejects duplicate node names and nodes without a query function', () => {
    const fake = new FakeCluster();
    expect(() => createRouter({ primary: fake.primary(), replicas: [fake.replica('a'), fake.replica('a')] })).toThrow(
      /distinct names/,
    );
    expect(() => createRouter({ primary: { name: 'p', client: 1 } as never })).toThrow(
      /Invalid option primary.query: expected a function, received undefined/,
    );
  });
});

describe('routing with fakes', () => {
  it('reads from replicas and, with none, from the primary', async () => {
    const { router } = setup(2);
    const served = new Set(await Promise.all(Array.from({ length: 10 }, () => whereRead(router))));
    expect(served).toEqual(new Set(['r1', 'r2']));
    const alone = setup(0).router;
    expect(await whereRead(alone)).toBe('primary');
  });

  it('ejects a replica on a connection error, retries on another, and surfaces query errors unretried', async () => {
    const { router } = setup(2, { balancer: 'round-robin' });
    await router.ready();
    const tried: string[] = [];
    const result = await router.read(async (client) => {
      tried.push(client);
      if (tried.length === 1) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      return client;
    });
    expect(tried).toHaveLength(2);
    expect(tried[0]).not.toBe(tried[1]);
    expect(result).toBe(tried[1]);
    expect(router.stats().replicas.find((r) => r.name === tried[0])?.state).toBe('down');

    let calls = 0;
    const queryError = Object.assign(new Error('syntax error'), { code: '42601' });
    await expect(
      router.read(async () => {
        calls++;
        throw queryError;
      }),
    ).rejects.toBe(queryError);
    expect(calls).toBe(1);
  });

  it('falls back to the primary after a retry fails too', async () => {
    const { router } = setup(2);
    await router.ready();
    const tried: string[] = [];
    const result = await router.read(async (client) => {
      tried.push(client);
      if (client !== 'primary') throw Object.assign(new Error('Connection terminated unexpectedly'), {});
      return client;
    });
    expect(tried).toHaveLength(3);
    expect(result).toBe('primary');
    expect(router.stats().reads).toMatchObject({ retries: 2, fallbacks: 1 });
  });

  it('retries a recovery conflict elsewhere without ejecting the replica', async () => {
    const { router } = setup(2);
    await router.ready();
    let first = true;
    await router.read(async (client) => {
      if (first) {
        first = false;
        throw Object.assign(new Error('canceling statement due to conflict with recovery'), { code: '40001' });
      }
      return client;
    });
    expect(router.stats().replicas.map((r) => r.state)).toEqual(['up', 'up']);
  });

  it('readmits an ejected replica once its probe passes again', async () => {
    const { fake, router } = setup(1);
    await router.ready();
    fake.down.add('r1');
    const events: string[] = [];
    router.on('replica-down', () => events.push('down'));
    router.on('replica-up', () => events.push('up'));
    const read = () =>
      router.read(async (client) => {
        if (fake.down.has(client)) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return client;
      });
    expect(await read()).toBe('primary');
    expect(router.stats().replicas[0]?.state).not.toBe('up');
    fake.down.delete('r1');
    await waitFor(() => router.stats().replicas[0]?.state === 'up');
    expect(events).toEqual(['down', 'up']);
    expect(await whereRead(router)).toBe('r1');
  });

  it('waits for a replica to replay a session write', async () => {
    const { fake, router } = setup(2, { waitTimeoutMs: 5000 });
    await router.ready();
    await router.session(async () => {
      await router.write(async () => fake.write());
      setTimeout(() => fake.catchUp('r2'), 10);
      expect(await whereRead(router)).toBe('r2');
    });
    expect(router.stats().reads).toMatchObject({ waits: 1, fallbacks: 0 });
  });

  it('falls back to the primary when no replica replays the write in time', async () => {
    const { fake, router } = setup(2, { waitTimeoutMs: 20 });
    await router.ready();
    await router.session(async () => {
      await router.write(async () => fake.write());
      expect(await whereRead(router)).toBe('primary');
    });
    expect(router.stats().reads).toMatchObject({ waits: 1, fallbacks: 1 });
  });

  it('shares primary probes among concurrent writers', async () => {
    const { fake, router } = setup(1);
    await router.ready();
    const before = fake.primaryProbes;
    await Promise.all(
      Array.from({ length: 50 }, () =>
        router.session(async () => {
          await router.write(async () => fake.write());
          fake.catchUp('r1');
          await whereRead(router);
        }),
      ),
    );
    expect(fake.primaryProbes - before).toBeLessThanOrEqual(3);
  });

  it('refuses misconfigured replicas and serves from the rest', async () => {
    const fake = new FakeCluster();
    const router = fake.router([
      fake.replica('promoted', { recovery: false }),
      fake.replica('foreign', { identifier: '42' }),
      fake.replica('ok'),
    ]);
    const error = await router.ready().catch((e: unknown) => e);
    expect(isLaglessError(error, 'REPLICA_MISCONFIGURED')).toBe(true);
    expect(new Set(await Promise.all(Array.from({ length: 5 }, () => whereRead(router))))).toEqual(new Set(['ok']));
  });

  it('rejects reads after close()', async () => {
    const { router } = setup(1);
    await router.close();
    await expect(whereRead(router)).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('round-trips its own token and rejects one from another cluster or ahead of the primary', async () => {
    const { fake, router } = setup(1, { tokenSecret: 'sixteen-byte-secret!' });
    const token = await router.session(async () => {
      await router.write(async () => fake.write());
      return router.token();
    });
    expect(await router.decodeToken(token ?? '')).toBe(fake.primaryLsn);
    const other = setup(1, { tokenSecret: 'sixteen-byte-secret!' });
    other.fake.systemIdentifier = '7000000000000000002';
    await expect(other.router.decodeToken(token ?? '')).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
    const behind = setup(1, { tokenSecret: 'sixteen-byte-secret!' });
    behind.fake.primaryLsn = 0x10n;
    await expect(behind.router.decodeToken(token ?? '')).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
  });
});

describe('CoalescedProbe', () => {
  it('fresh() never reuses a probe that started before the call', async () => {
    let value = 0;
    const resolvers: Array<() => void> = [];
    const probe = new CoalescedProbe(
      () =>
        new Promise<number>((resolve) => {
          const seen = value;
          resolvers.push(() => resolve(seen));
        }),
    );
    const a = probe.fresh();
    value = 1;
    const b = probe.fresh();
    const c = probe.fresh();
    expect(probe.started).toBe(1);
    resolvers[0]?.();
    expect(await a).toBe(0);
    await Promise.resolve();
    await Promise.resolve();
    expect(probe.started).toBe(2);
    resolvers[1]?.();
    expect(await b).toBe(1);
    expect(await c).toBe(1);
    expect(probe.shared()).toBeInstanceOf(Promise);
  });
});

describe('PrimaryLsnHistory', () => {
  it('tells when the primary passed a position and computes lag', () => {
    const history = new PrimaryLsnHistory();
    history.record(100n, 1000);
    history.record(100n, 1500);
    history.record(200n, 2000);
    history.record(150n, 2100); // a late, older sample changes nothing
    history.record(300n, 3000);
    expect(history.passedAt(50n)).toBe(1000);
    expect(history.passedAt(100n)).toBe(2000);
    expect(history.passedAt(250n)).toBe(3000);
    expect(history.passedAt(300n)).toBeUndefined();
    expect(history.lagOf(100n, 3500)).toEqual({ bytes: 200, ms: 1500 });
    expect(history.lagOf(300n, 3500)).toEqual({ bytes: 0, ms: 0 });
  });
});

describe('error classification', () => {
  it('tells connection failures from query errors', () => {
    expect(isConnectionLevelError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionLevelError(Object.assign(new Error('x'), { code: '08006' }))).toBe(true);
    expect(isConnectionLevelError(Object.assign(new Error('x'), { code: '57P01' }))).toBe(true);
    expect(isConnectionLevelError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionLevelError(new Error('wrapped', { cause: { kind: 'DatabaseNotReachable' } }))).toBe(true);
    expect(isConnectionLevelError(new LaglessError('QUERY_TIMEOUT', 'slow'))).toBe(true);
    expect(isConnectionLevelError(Object.assign(new Error('dup'), { code: '23505' }))).toBe(false);
    expect(isConnectionLevelError(new Error('relation "x" does not exist'))).toBe(false);
    expect(
      isRecoveryConflict(
        Object.assign(new Error('canceling statement due to conflict with recovery'), { code: '40001' }),
      ),
    ).toBe(true);
    expect(isRecoveryConflict(Object.assign(new Error('could not serialize access'), { code: '40001' }))).toBe(false);
  });

  it('tells a statement that was never sent (no connection) from one that may have run', () => {
    expect(isNotConnectedError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isNotConnectedError(Object.assign(new Error('auth'), { code: '28P01' }))).toBe(true);
    expect(isNotConnectedError(new Error('wrapped', { cause: { kind: 'DatabaseNotReachable' } }))).toBe(true);
    expect(isNotConnectedError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(false);
    expect(isNotConnectedError(new Error('Connection terminated unexpectedly'))).toBe(false);
  });

  it('describes a failure by the innermost code and message, as Prisma wraps them', () => {
    const prisma = new Error('AuthenticationFailed', {
      cause: {
        kind: 'AuthenticationFailed',
        originalCode: '28P01',
        originalMessage: 'password authentication failed for user "u"',
      },
    });
    expect(describeFailure(prisma)).toEqual({ code: '28P01', message: 'password authentication failed for user "u"' });
    const unreachable = new Error('DatabaseNotReachable', {
      cause: { kind: 'DatabaseNotReachable', host: '127.0.0.1', port: 1 },
    });
    expect(describeFailure(unreachable)).toEqual({
      code: 'DatabaseNotReachable',
      message: 'DatabaseNotReachable (127.0.0.1:1)',
    });
    expect(describeFailure(new Error('connect to postgres://u:hunter2@h:1/db failed'))).toEqual({
      code: undefined,
      message: 'connect to postgres://u:***@h:1/db failed',
    });
  });
});
