// The router when the primary, the token store or a client's token goes bad: fakes, no database.
// The same situations run against real servers in test/faults/.
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeToken, isLaglessError, MemoryTokenStore, type RouterEventName, type TokenStore } from '../src/index.js';
import { PrimaryLsnHistory } from '../src/lag.js';
import { pgNode } from '../src/pg.js';
import type { Router } from '../src/router.js';
import { rejection } from './assertions.js';
import { closeAfterEach, FakeCluster, readOn, refused, waitFor } from './fake-cluster.js';

const SECRET = 'a-secret-of-sixteen-bytes';
const OLD_SECRET = 'the-previous-secret-16b';

const track = closeAfterEach();
afterEach(() => {
  vi.restoreAllMocks();
});

function events(router: Router<string>, ...names: RouterEventName[]): Array<[RouterEventName, unknown]> {
  const seen: Array<[RouterEventName, unknown]> = [];
  for (const name of names) router.on(name, (payload) => seen.push([name, payload]));
  return seen;
}

describe('the primary away', () => {
  it('a router created during the outage admits the replicas that agree, serves them, and says why in ready()', async () => {
    const fake = new FakeCluster();
    fake.down.add('primary');
    const router = track(fake.router([fake.replica('r1'), fake.replica('r2')]));
    const served = new Set(await Promise.all(Array.from({ length: 10 }, () => readOn(fake, router))));
    expect(served).toEqual(new Set(['r1', 'r2']));
    const error = await rejection(router.ready());
    expect(isLaglessError(error, 'PRIMARY_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain('primary "primary": connect ECONNREFUSED');
    expect((error as Error).message).toContain('(ECONNREFUSED)');
    expect(router.stats().primary.state).toBe('down');
    // Reads pay for no start-up probe of their own: the retry runs in the background.
    const probes = fake.identityProbes;
    await Promise.all(Array.from({ length: 20 }, () => readOn(fake, router)));
    expect(fake.identityProbes - probes).toBeLessThanOrEqual(2);

    fake.down.delete('primary');
    await waitFor(() =>
      router.ready().then(
        () => true,
        () => false,
      ),
    );
    expect(router.stats().primary.state).toBe('up');
  });

  it('a replica of another cluster is refused, whether the majority or the primary tells', async () => {
    const fake = new FakeCluster();
    fake.down.add('primary');
    const router = track(
      fake.router([fake.replica('r1'), fake.replica('r2'), fake.replica('stray', { identifier: '42' })]),
    );
    const seen = events(router, 'replica-misconfigured');
    const served = new Set(await Promise.all(Array.from({ length: 10 }, () => readOn(fake, router))));
    expect(served).toEqual(new Set(['r1', 'r2']));
    expect(seen.map(([, payload]) => (payload as { replica: string }).replica)).toEqual(['stray']);
  });

  it('replicas that disagree, with no pin, serve nothing until the primary answers; a pin decides at once', async () => {
    const fake = new FakeCluster();
    fake.down.add('primary');
    const split = track(fake.router([fake.replica('r1'), fake.replica('r2', { identifier: '42' })]));
    // Only the primary can serve, and it is down: the read fails with the driver's own error.
    await expect(readOn(fake, split)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const pinned = track(
      fake.router([fake.replica('r1'), fake.replica('r2', { identifier: '42' })], {
        systemIdentifier: fake.systemIdentifier,
      }),
    );
    expect(await readOn(fake, pinned)).toBe('r1');
    expect(pinned.stats().replicas.map((r) => r.state)).toEqual(['up', 'down']);
  });

  it('a primary of another cluster than the pinned one is reported, and its replicas still serve', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { systemIdentifier: '7000000000000000999' }));
    const error = await rejection(router.ready());
    expect(isLaglessError(error, 'PRIMARY_MISCONFIGURED')).toBe(true);
    expect((error as Error).message).toContain('pinned 7000000000000000999');
  });

  it('a session continued from a token reads from a replica that has it, without asking the primary', async () => {
    const fake = new FakeCluster();
    const writer = track(fake.router([fake.replica('r1'), fake.replica('r2')], { tokenSecret: SECRET }));
    const token = await writer.session(async () => {
      await writer.write(async () => fake.write());
      return writer.token();
    });
    fake.down.add('primary');
    const replicas = [fake.replica('r1'), fake.replica('r2')];
    // r2 never replayed the write: only r1 may serve the token.
    fake.replay.set('r2', 0x10n);
    const reader = track(fake.router(replicas, { tokenSecret: SECRET, onTimeout: 'error', waitTimeoutMs: 2000 }));
    const probes = fake.primaryProbes;
    for (let i = 0; i < 10; i++) {
      expect(await reader.session({ token }, () => readOn(fake, reader))).toBe('r1');
    }
    expect(fake.primaryProbes).toBe(probes);
    expect(reader.stats().tokens).toEqual({ accepted: 10, rejected: 0, unbounded: 0 });
  });

  it('a token ahead of an answering primary is dropped after one probe; the read does not wait', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { tokenSecret: SECRET, waitTimeoutMs: 5000 }));
    await router.ready();
    const future = encodeToken({ lsn: 0xffff_0000_0000n, systemIdentifier: fake.systemIdentifier }, SECRET);
    const seen = events(router, 'token-rejected');
    const reasons: string[] = [];
    const started = performance.now();
    const served = await router.session({ token: future, onTokenRejected: (r) => reasons.push(r) }, () =>
      readOn(fake, router),
    );
    expect(performance.now() - started).toBeLessThan(1000);
    expect(served).toBe('r1');
    expect(reasons).toEqual(['ahead-of-primary']);
    expect(seen.map(([, payload]) => (payload as { reason: string }).reason)).toEqual(['ahead-of-primary']);
  });

  it("a request that writes while carrying such a token hands back its own write's position, not the bogus one", async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { tokenSecret: SECRET, waitTimeoutMs: 5000 }));
    await router.ready();
    const future = encodeToken({ lsn: 0xffff_0000_0000n, systemIdentifier: fake.systemIdentifier }, SECRET);
    const minted = await router.session({ token: future }, async () => {
      await router.write(async () => fake.write());
      return router.token();
    });
    expect(await router.decodeToken(minted ?? '')).toBe(fake.primaryLsn);
    expect(router.stats().tokens.rejected).toBe(1);
  });

  it('requiredLsn() (adapters that route statements themselves) settles such a token before answering', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { tokenSecret: SECRET, waitTimeoutMs: 5000 }));
    await router.ready();
    const future = encodeToken({ lsn: 0xffff_0000_0000n, systemIdentifier: fake.systemIdentifier }, SECRET);
    const started = performance.now();
    expect(await router.session({ token: future }, () => router.requiredLsn())).toBe(0n);
    expect(performance.now() - started).toBeLessThan(1000);
    const real = encodeToken({ lsn: fake.primaryLsn, systemIdentifier: fake.systemIdentifier }, SECRET);
    expect(await router.session({ token: real }, () => router.requiredLsn())).toBe(fake.primaryLsn);
  });

  it('a token ahead of a primary that does not answer waits at most waitTimeoutMs, then follows onTimeout', async () => {
    const fake = new FakeCluster();
    fake.down.add('primary');
    const router = track(
      fake.router([fake.replica('r1')], { tokenSecret: SECRET, waitTimeoutMs: 50, onTimeout: 'error' }),
    );
    const future = encodeToken({ lsn: 0xffff_0000_0000n, systemIdentifier: fake.systemIdentifier }, SECRET);
    const started = performance.now();
    const error = await rejection(router.session({ token: future }, () => readOn(fake, router)));
    expect(isLaglessError(error, 'LSN_WAIT_TIMEOUT')).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('after a failover the new primary is behind an old token: it is dropped, no read hangs', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 5000 }));
    await router.ready();
    const token = await router.session(async () => {
      await router.write(async () => fake.write());
      await router.write(async () => fake.write());
      return router.token();
    });
    // The promoted standby never got the last writes: its WAL ends before the token's position.
    fake.primaryLsn -= 0x180n;
    fake.catchUp('r1');
    const fresh = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 5000 }));
    const started = performance.now();
    expect(await fresh.session({ token }, () => readOn(fake, fresh))).toBe('r1');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(fresh.stats().tokens.rejected).toBe(1);
  });

  it('a write refused at connect moves nothing; one that may have committed makes reads wait for its position', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20 }));
    await router.ready();
    await router.session(async () => {
      await expect(
        router.write(async () => {
          throw refused();
        }),
      ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect(await readOn(fake, router)).toBe('r1');
      await expect(
        router.write(async () => {
          fake.write();
          throw Object.assign(new Error('Connection terminated unexpectedly'), {});
        }),
      ).rejects.toThrow(/terminated/);
      // r1 has not replayed that write: only the primary can serve this session now.
      expect(await readOn(fake, router)).toBe('primary');
    });
    expect(router.stats().reads.waits).toBe(1);
  });
});

describe('tokens a router hands out', () => {
  it('a router made just now waits for its first checks before minting a token', async () => {
    const fake = new FakeCluster();
    fake.identityDelayMs = 30;
    const router = track(fake.router([fake.replica('r1')]));
    const token = await router.session(async () => {
      await router.write(async () => fake.write());
      return router.token();
    });
    expect(token).toMatch(/^l1\./);
  });
});

describe('sessions', () => {
  it('a lazy promise returned by the session body runs inside the session (Prisma queries are lazy)', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')]));
    await router.ready();
    const token = encodeToken({ lsn: fake.primaryLsn, systemIdentifier: fake.systemIdentifier });
    // Like a PrismaPromise: nothing runs until someone calls then().
    const lazy = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose, as Prisma's lazy promises are.
      then: (resolve: (v: unknown) => void, reject: (e: unknown) => void) => router.requiredLsn().then(resolve, reject),
    };
    expect(await router.session({ token }, () => lazy as unknown as Promise<bigint>)).toBe(fake.primaryLsn);
  });
});

describe('tokens a client sends', () => {
  const cases: Array<[string, (fake: FakeCluster) => unknown, string]> = [
    [
      'forged signature',
      (f) => `${encodeToken({ lsn: 5n, systemIdentifier: f.systemIdentifier }, SECRET).slice(0, -3)}abc`,
      'bad-signature',
    ],
    ['unsigned', (f) => encodeToken({ lsn: 5n, systemIdentifier: f.systemIdentifier }), 'unsigned'],
    ['malformed', () => 'not a token', 'malformed'],
    ['unknown version', () => 'l9.0000000000000005.1', 'unsupported-version'],
    ['foreign cluster', () => encodeToken({ lsn: 5n, systemIdentifier: '42' }, SECRET), 'foreign-cluster'],
    ['100 KB', () => `l1.${'A'.repeat(100_000)}`, 'malformed'],
    [
      'injected ;',
      (f) => `${encodeToken({ lsn: 5n, systemIdentifier: f.systemIdentifier }, SECRET)};evil=1`,
      'malformed',
    ],
    ['non-ASCII', () => 'l1.00000000000000é5.1', 'malformed'],
    ['not a string', () => 42, 'malformed'],
  ];

  it.each(cases)('%s: ignored as if absent, the read served, one event', async (_label, make, reason) => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { tokenSecret: SECRET, waitTimeoutMs: 5000 }));
    await router.ready();
    const seen = events(router, 'token-rejected');
    const reasons: string[] = [];
    const started = performance.now();
    const served = await router.session(
      { token: make(fake) as string, onTokenRejected: (r) => reasons.push(r) },
      async () => ({ read: await readOn(fake, router), token: await router.token() }),
    );
    expect(performance.now() - started).toBeLessThan(500);
    // As if absent: the token handed back bounds only what this session read.
    expect(served.read).toBe('r1');
    expect(await router.decodeToken(served.token ?? '')).toBe(fake.replay.get('r1'));
    expect(reasons).toEqual([reason]);
    expect(seen).toHaveLength(1);
    expect(router.stats().tokens).toEqual({ accepted: 0, rejected: 1, unbounded: 0 });
  });

  it('a signed token is refused by a router without a secret; an unsigned far-future one is checked with the primary', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 5000 }));
    await router.ready();
    const reasons: string[] = [];
    const signed = encodeToken({ lsn: 5n, systemIdentifier: fake.systemIdentifier }, SECRET);
    const unsigned = encodeToken({ lsn: 0xffff_ffff_ffffn, systemIdentifier: fake.systemIdentifier });
    for (const token of [signed, unsigned]) {
      expect(await router.session({ token, onTokenRejected: (r) => reasons.push(r) }, () => readOn(fake, router))).toBe(
        'r1',
      );
    }
    expect(reasons).toEqual(['signed-without-secret', 'ahead-of-primary']);
  });

  it('rotates secrets: the first signs, every one verifies', async () => {
    const fake = new FakeCluster();
    const rotated = track(fake.router([fake.replica('r1')], { tokenSecret: [SECRET, OLD_SECRET] }));
    const onlyNew = track(fake.router([fake.replica('r1')], { tokenSecret: SECRET }));
    await Promise.all([rotated.ready(), onlyNew.ready()]);
    const old = encodeToken({ lsn: fake.primaryLsn, systemIdentifier: fake.systemIdentifier }, OLD_SECRET);
    const minted = await rotated.session({ token: old }, () => rotated.token());
    expect(rotated.stats().tokens).toEqual({ accepted: 1, rejected: 0, unbounded: 0 });
    expect(minted).not.toBe(old);
    expect(await onlyNew.decodeToken(minted ?? '')).toBe(fake.primaryLsn);
    await expect(onlyNew.decodeToken(old)).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
  });
});

describe('the token store', () => {
  /** A store in memory that can be wiped (as a Redis restarting empty) and made to fail. */
  class FlakyStore implements TokenStore {
    readonly data = new Map<string, bigint>();
    failing = false;
    lost: { epoch: string; floor: bigint | undefined } | undefined;
    raises = 0;
    async get(key: string) {
      if (this.failing) throw refused();
      return { lsn: this.data.get(key), ...(this.lost ? { loss: { ...this.lost, confirmed: true } } : {}) };
    }
    async raise(key: string, lsn: bigint) {
      this.raises++;
      if (this.failing) throw refused();
      const kept = (this.data.get(key) ?? 0n) > lsn ? (this.data.get(key) as bigint) : lsn;
      this.data.set(key, kept);
      return kept;
    }
    async recordLossFloor(_key: string, epoch: string, floor: bigint) {
      if (this.lost?.epoch === epoch) this.lost.floor = floor;
    }
  }

  it('a raise the store refused is retried until it lands; reads here honour it meanwhile', async () => {
    const fake = new FakeCluster();
    const store = new FlakyStore();
    const router = track(fake.router([fake.replica('r1')], { tokenStore: store, waitTimeoutMs: 20 }));
    await router.ready();
    store.failing = true;
    await router.session({ key: 'u' }, () => router.write(async () => fake.write()));
    expect(router.stats().pendingRaises).toBe(1);
    store.failing = false;
    // r1 has not replayed the write: the raise this instance still owes sends the read to the primary.
    expect(await router.session({ key: 'u' }, () => readOn(fake, router))).toBe('primary');
    await waitFor(() => store.data.get('u') === fake.primaryLsn);
    await waitFor(() => router.stats().pendingRaises === 0);
  });

  it("token() resolves only once the session's raise landed, so a response carrying it is seen by every instance", async () => {
    const fake = new FakeCluster();
    const store = new MemoryTokenStore();
    let landRaise: (() => void) | undefined;
    const slowStore: TokenStore = {
      get: (key) => store.get(key),
      raise: async (key, lsn, ttlMs) => {
        await new Promise<void>((resolve) => {
          landRaise = resolve;
        });
        return store.raise(key, lsn, ttlMs);
      },
    };
    const router = track(fake.router([fake.replica('r1')], { tokenStore: slowStore }));
    await router.ready();
    let token: string | undefined;
    const session = router.session({ key: 'u' }, async () => {
      await router.write(async () => fake.write());
      token = await router.token();
    });
    await waitFor(() => landRaise !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(token, 'token() returned before the store had the write').toBeUndefined();
    landRaise?.();
    await session;
    expect(token).toMatch(/^l1\./);
    expect(await store.get('u')).toBe(fake.primaryLsn);
  });

  it('keys a store lost require the primary position at the loss, read once and recorded for the others', async () => {
    const fake = new FakeCluster();
    const store = new FlakyStore();
    const router = track(fake.router([fake.replica('r1')], { tokenStore: store, waitTimeoutMs: 20 }));
    await router.ready();
    const seen = events(router, 'store-data-lost');
    store.lost = { epoch: '1700000000', floor: undefined };
    fake.write();
    expect(await router.session({ key: 'gone' }, () => readOn(fake, router))).toBe('primary');
    expect(store.lost.floor).toBe(fake.primaryLsn);
    expect(seen).toHaveLength(1);
    fake.catchUp('r1');
    const probes = fake.primaryProbes;
    expect(await router.session({ key: 'other' }, () => readOn(fake, router))).toBe('r1');
    expect(fake.primaryProbes).toBe(probes);
  });

  it('while the store fails, keyed reads go to the primary, and the outage is logged once', async () => {
    const fake = new FakeCluster();
    const store = new FlakyStore();
    const lines: string[] = [];
    const router = track(fake.router([fake.replica('r1')], { tokenStore: store, logger: (line) => lines.push(line) }));
    await router.ready();
    store.failing = true;
    for (let i = 0; i < 3; i++) expect(await router.session({ key: 'u' }, () => readOn(fake, router))).toBe('primary');
    store.failing = false;
    expect(await router.session({ key: 'u' }, () => readOn(fake, router))).toBe('r1');
    expect(lines.filter((line) => line.includes('token store'))).toEqual([
      expect.stringContaining('[lagless] token store unavailable: connect ECONNREFUSED'),
      '[lagless] token store answers again',
    ]);
  });

  it('logs the warnings a store reports about its set-up', async () => {
    const fake = new FakeCluster();
    const store = Object.assign(new MemoryTokenStore(), { check: async () => ['eviction can drop tokens'] });
    const lines: string[] = [];
    const router = track(fake.router([fake.replica('r1')], { tokenStore: store, logger: (line) => lines.push(line) }));
    await router.session({ key: 'u' }, () => readOn(fake, router));
    await waitFor(() => lines.length > 0);
    expect(lines).toContain('[lagless] token store: eviction can drop tokens');
  });
});

describe('degradation is loud', () => {
  it('ready() names every replica that failed its check and why; the rest serve', async () => {
    const fake = new FakeCluster();
    fake.down.add('r1');
    const router = track(fake.router([fake.replica('r1'), fake.replica('r2')]));
    const error = await rejection(router.ready());
    expect(isLaglessError(error, 'REPLICA_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toBe(
      'lagless is not ready: replica "r1": connect ECONNREFUSED 127.0.0.1:1 (ECONNREFUSED)',
    );
    expect((error as { context: { failures: unknown } }).context.failures).toEqual([
      { node: 'r1', role: 'replica', code: 'ECONNREFUSED', reason: 'connect ECONNREFUSED 127.0.0.1:1' },
    ]);
    expect(await readOn(fake, router)).toBe('r2');
  });

  it('prints a state change on stderr when nobody listens, not when someone does, never with logger: false', async () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const fake = new FakeCluster();
    fake.down.add('r1');
    track(fake.router([fake.replica('r1')], { logger: undefined }));
    await waitFor(() => written.length > 0);
    expect(written[0]).toMatch(/^\[lagless\] replica "r1" is down: connect ECONNREFUSED .* \(ECONNREFUSED\); /);

    written.length = 0;
    const heard = track(fake.router([fake.replica('r2')], { logger: undefined }));
    fake.down.add('r2');
    heard.on('replica-down', () => {});
    heard.reportReplicaError('r2', refused());
    track(fake.router([fake.replica('r3')], { logger: false })).reportReplicaError('r3', refused());
    await sleep(20);
    expect(written).toEqual([]);
  });
});

describe('teardown', () => {
  it('close() settles a read waiting for replay at once', async () => {
    const fake = new FakeCluster();
    const router = fake.router([fake.replica('r1')], { waitTimeoutMs: 30_000 });
    await router.ready();
    const read = router.session(async () => {
      await router.write(async () => fake.write());
      return readOn(fake, router);
    });
    await sleep(20);
    const started = performance.now();
    await router.close();
    await expect(read).rejects.toMatchObject({ code: 'CLOSED' });
    expect(performance.now() - started).toBeLessThan(200);
  });

  it('await using closes the router', async () => {
    const fake = new FakeCluster();
    let escaped: Router<string> | undefined;
    {
      await using router = fake.router([fake.replica('r1')]);
      escaped = router;
      expect(await readOn(fake, router)).toBe('r1');
    }
    await expect(readOn(fake, escaped)).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('pgNode', () => {
  class FakePool extends EventEmitter {
    ended = false;
    async query() {
      return { rows: [] };
    }
    async end() {
      this.ended = true;
    }
  }

  it('hears a pool error at once, and the router that takes the node ejects that replica', async () => {
    const pool = new FakePool();
    const node = pgNode('r1', pool);
    // Before any router: heard, so no uncaught 'error'.
    pool.emit('error', refused());
    const fake = new FakeCluster();
    fake.replica('r1');
    const router = track(fake.router([{ ...node, client: 'r1' } as never]));
    await router.ready();
    expect(router.stats().replicas[0]?.state).toBe('up');
    pool.emit(
      'error',
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
    );
    expect(router.stats().replicas[0]?.state).toBe('down');
    await node.end();
    expect(pool.ended).toBe(true);
  });

  it('takes a connection string or a config and validates its name', () => {
    const node = pgNode('p', 'postgres://u:p@127.0.0.1:1/db');
    expect(node.pool).toBeTypeOf('object');
    void node.end();
    expect(() => pgNode('', 'postgres://x')).toThrow(/Invalid option pgNode\(name\)/);
  });
});

describe('PrimaryLsnHistory', () => {
  it('starts over when the position goes backwards (another server answers)', () => {
    const history = new PrimaryLsnHistory();
    history.record(500n, 1000);
    history.restart(300n, 2000);
    expect(history.latestLsn).toBe(300n);
    expect(history.passedAt(100n)).toBe(2000);
  });
});
