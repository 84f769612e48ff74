import { describe, expect, it } from 'vitest';
import type { RouterNode } from '../src/index.js';
import type { Router } from '../src/router.js';
import { closeAfterEach, FakeCluster, readOn, waitFor } from './fake-cluster.js';

const track = closeAfterEach();

function zoned(node: RouterNode<string>, zone: string): RouterNode<string> {
  return { ...node, zone };
}

describe('zones', () => {
  function setup() {
    const fake = new FakeCluster();
    const replicas = [zoned(fake.replica('a1'), 'a'), zoned(fake.replica('b1'), 'b'), zoned(fake.replica('b2'), 'b')];
    const router = track(fake.router(replicas, { zone: 'a', balancer: 'round-robin', waitTimeoutMs: 20 }));
    return { fake, router };
  }

  it("reads stay in the app's zone while a replica there can serve them", async () => {
    const { fake, router } = setup();
    const served = await Promise.all(Array.from({ length: 30 }, () => readOn(fake, router)));
    expect(new Set(served)).toEqual(new Set(['a1']));
    expect(router.stats().reads.byZone).toEqual({ a: 30, b: 0 });
    expect(router.stats().replicas.map((r) => r.zone)).toEqual(['a', 'b', 'b']);
  });

  it('move to the other zone when the local replica is down, and come back when it is readmitted', async () => {
    const { fake, router } = setup();
    await router.ready();
    fake.down.add('a1');
    const away = await Promise.all(Array.from({ length: 10 }, () => readOn(fake, router)));
    expect(away.filter((node) => node === 'a1')).toEqual([]);
    expect(new Set(away)).toEqual(new Set(['b1', 'b2']));
    fake.down.delete('a1');
    await waitFor(() => router.stats().replicas[0]?.state === 'up');
    expect(await readOn(fake, router)).toBe('a1');
  });

  it('go to another zone when the local replica has not replayed what the read needs', async () => {
    const { fake, router } = setup();
    await router.ready();
    await router.session(async () => {
      await router.write(async () => fake.write());
      fake.catchUp('b1');
      expect(await readOn(fake, router)).toBe('b1');
    });
  });
});

describe('a session leaves its replica for a better one', () => {
  /** A read that takes `slowMs` on `slow` and no time elsewhere. */
  const readSlowOn = (fake: FakeCluster, router: Router<string>, slow: string, slowMs: number) =>
    router.read(async (client) => {
      if (client === slow) await new Promise((resolve) => setTimeout(resolve, slowMs));
      return fake.serve(client);
    });

  it('one that answers clearly faster (the balancer’s tie rule), after checking it has what the session saw', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin' }));
    await router.ready();
    let probesBefore = 0;
    let measured!: () => void;
    const slowedDown = new Promise<void>((resolve) => {
      measured = resolve;
    });
    let firstRead!: (node: string) => void;
    const firstNode = new Promise<string>((resolve) => {
      firstRead = resolve;
    });
    const session = router.session(async () => {
      // Until latencies are measured, the session stays where it first read.
      const seen = [await readOn(fake, router)];
      firstRead(seen[0] as string);
      await slowedDown;
      for (let i = 0; i < 4; i++) seen.push(await readSlowOn(fake, router, seen[0] as string, 15));
      return seen;
    });
    const first = await firstNode;
    const other = first === 'r1' ? 'r2' : 'r1';
    // Its replica slows down while the other stays fast, as reads outside the session measure.
    for (let i = 0; i < 8; i++) await readSlowOn(fake, router, first, 15);
    probesBefore = fake.replayProbes + fake.primaryProbes;
    measured();
    const seen = await session;
    const served = { seen, first, other };
    expect(served.seen[0]).toBe(served.first);
    // It moved to the faster replica and stayed there.
    expect(served.seen.slice(-3)).toEqual([served.other, served.other, served.other]);
    expect(fake.replayProbes + fake.primaryProbes, 'leaving checked what the session saw').toBeGreaterThan(
      probesBefore,
    );
  });

  it("one in the app's zone, once one there can serve", async () => {
    const fake = new FakeCluster();
    const replicas = [zoned(fake.replica('a1'), 'a'), zoned(fake.replica('b1'), 'b')];
    const router = track(fake.router(replicas, { zone: 'a' }));
    await router.ready();
    fake.down.add('a1');
    await waitFor(async () => (await readOn(fake, router)) === 'b1');
    const served = await router.session(async () => {
      const away = await readOn(fake, router);
      fake.down.delete('a1');
      await waitFor(() => router.stats().replicas[0]?.state === 'up');
      return [away, await readOn(fake, router)];
    });
    expect(served).toEqual(['b1', 'a1']);
  });
});

describe('monotonic reads in a session', () => {
  it('a session stays on the replica it read from, even under round-robin', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin' }));
    await router.ready();
    const served = await router.session(async () => {
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) seen.push(await readOn(fake, router));
      return seen;
    });
    expect(new Set(served).size).toBe(1);
    // Outside a session, round-robin alternates as asked.
    const outside = [await readOn(fake, router), await readOn(fake, router)];
    expect(new Set(outside).size).toBe(2);
  });

  it('with monotonicReads: false, a session alternates like any read', async () => {
    const fake = new FakeCluster();
    const router = track(
      fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin', monotonicReads: false }),
    );
    await router.ready();
    const served = await router.session(async () => [await readOn(fake, router), await readOn(fake, router)]);
    expect(new Set(served).size).toBe(2);
  });

  it('leaving a replica that went down requires the primary position: it may have shown anything up to it', async () => {
    const fake = new FakeCluster();
    const router = track(
      fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin', waitTimeoutMs: 20 }),
    );
    await router.ready();
    await router.session(async () => {
      const first = await readOn(fake, router);
      const other = first === 'r1' ? 'r2' : 'r1';
      // The first replica moved on before it died; the other did not.
      fake.write();
      fake.catchUp(first);
      fake.down.add(first);
      router.reportReplicaError(first, Object.assign(new Error('x'), { code: 'ECONNRESET' }));
      expect(await readOn(fake, router)).toBe('primary');
      fake.catchUp(other);
      expect(await readOn(fake, router)).toBe(other);
    });
  });

  it('a token after a session that only read bounds what it saw; another instance continues from it', async () => {
    const fake = new FakeCluster();
    const a = track(fake.router([fake.replica('r1')]));
    await a.ready();
    const token = await a.session(async () => {
      await readOn(fake, a);
      return a.token();
    });
    expect(await a.decodeToken(token ?? '')).toBe(fake.replay.get('r1'));
    const replicas = [fake.replica('r1'), fake.replica('r2')];
    fake.replay.set('r2', 0x10n);
    const b = track(fake.router(replicas, { waitTimeoutMs: 20 }));
    await b.ready();
    for (let i = 0; i < 5; i++) expect(await b.session({ token }, () => readOn(fake, b))).toBe('r1');
  });

  it('a read the primary served raises the session to the primary position after it', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20 }));
    await router.ready();
    fake.write();
    await router.session(async () => {
      expect(await router.read(async (client) => fake.serve(client), { primary: true })).toBe('primary');
      // r1 has not replayed the write the primary read may have shown.
      expect(await readOn(fake, router)).toBe('primary');
      fake.catchUp('r1');
      expect(await readOn(fake, router)).toBe('r1');
    });
  });
});

describe('nested sessions', () => {
  it('a write in a nested session raises the sessions around it', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20 }));
    await router.ready();
    await router.session(async () => {
      await router.session(() => router.write(async () => fake.write()));
      expect(await readOn(fake, router)).toBe('primary');
    });
  });

  it('what a nested session read bounds the reads of the session around it', async () => {
    const fake = new FakeCluster();
    const router = track(
      fake.router([fake.replica('r1'), fake.replica('r2')], { balancer: 'round-robin', waitTimeoutMs: 20 }),
    );
    await router.ready();
    await router.session(async () => {
      const inner = await router.session(() => readOn(fake, router));
      const other = inner === 'r1' ? 'r2' : 'r1';
      fake.write();
      fake.catchUp(inner);
      fake.down.add(inner);
      router.reportReplicaError(inner, Object.assign(new Error('x'), { code: 'ECONNRESET' }));
      // The other replica is behind what the nested read's replica had: not good enough.
      expect(await readOn(fake, router)).not.toBe(other);
    });
  });
});

describe('safe by default', () => {
  it('a read outside any session never misses a write this process made', async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20 }));
    await router.ready();
    expect(await readOn(fake, router)).toBe('r1');
    await router.write(async () => fake.write());
    expect(await readOn(fake, router)).toBe('primary');
    fake.catchUp('r1');
    expect(await readOn(fake, router)).toBe('r1');
  });

  it("inside a session only the session's scope counts; under 'global' the process's too", async () => {
    for (const [consistency, expected] of [
      ['session', 'r1'],
      ['global', 'primary'],
    ] as const) {
      const fake = new FakeCluster();
      const router = track(fake.router([fake.replica('r1')], { waitTimeoutMs: 20, consistency }));
      await router.ready();
      await router.write(async () => fake.write());
      expect(await router.session(() => readOn(fake, router))).toBe(expected);
    }
  });

  it("consistency: 'none' reads from replicas after writes", async () => {
    const fake = new FakeCluster();
    const router = track(fake.router([fake.replica('r1')], { consistency: 'none' }));
    await router.ready();
    await router.write(async () => fake.write());
    expect(await readOn(fake, router)).toBe('r1');
  });
});
