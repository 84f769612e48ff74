// Session guarantees and zones with fakes, no database. test/consistency/ checks them on real servers.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { RouterNode } from '../src/index.js';
import type { Router } from '../src/router.js';
import { FakeCluster } from './fake-cluster.js';

const routers: Router<string>[] = [];
afterEach(async () => {
  for (const router of routers.splice(0)) await router.close();
});

function track(router: Router<string>): Router<string> {
  routers.push(router);
  return router;
}

function readOn(fake: FakeCluster, router: Router<string>): Promise<string> {
  return router.read(async (client) => fake.serve(client));
}

function zoned(node: RouterNode<string>, zone: string): RouterNode<string> {
  return { ...node, zone };
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
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
