import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTestkitError, type RedisCluster, type StartRedisClusterOptions, startRedisCluster } from '../src/index.js';
import { type RespReply, respCommand } from '../src/resp.js';
import { canListen, runScript, waitFor } from './helpers.js';

const HOST = '127.0.0.1';

const send = (port: number, ...args: string[]): Promise<RespReply> => respCommand(HOST, port, args);
const dbsize = async (port: number): Promise<number> => Number(await send(port, 'DBSIZE'));

/** `CLUSTER SLOTS` as `[first, last, port of the master]`, in slot order. */
async function slotOwners(port: number): Promise<Array<[number, number, number]>> {
  const reply = (await send(port, 'CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, ...unknown[]]]>;
  return reply
    .map(([first, last, [, owner]]): [number, number, number] => [first, last, owner])
    .sort((a, b) => a[0] - b[0]);
}

describe('startRedisCluster', () => {
  let cluster: RedisCluster;
  const clients: Cluster[] = [];

  /** An ioredis Cluster client over our startup nodes; errors during node restarts are expected. */
  function clusterClient(): Cluster {
    const client = new Cluster(cluster.startupNodes);
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    cluster = await startRedisCluster();
  });

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await cluster?.stop();
  });

  it('forms a cluster of three masters that covers every slot, without persistence', async () => {
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.startupNodes).toEqual(cluster.nodes.map(({ port }) => ({ host: HOST, port })));
    expect(new Set(cluster.nodes.flatMap((n) => [n.port, n.busPort])).size).toBe(6);
    for (const node of cluster.nodes) {
      expect(node.url).toBe(`redis://${HOST}:${node.port}`);
      const info = String(await send(node.port, 'CLUSTER', 'INFO'));
      expect(info).toContain('cluster_state:ok');
      expect(info).toContain('cluster_known_nodes:3');
      expect(info).toContain('cluster_size:3');
      expect(await send(node.port, 'CONFIG', 'GET', 'save')).toEqual(['save', '']);
      expect(await send(node.port, 'CONFIG', 'GET', 'appendonly')).toEqual(['appendonly', 'no']);
    }
    const owners = await slotOwners(cluster.nodes[1]?.port ?? 0);
    expect(owners).toEqual([
      [0, 5460, cluster.nodes[0]?.port],
      [5461, 10921, cluster.nodes[1]?.port],
      [10922, 16383, cluster.nodes[2]?.port],
    ]);
  });

  it('serves 200 keys through an ioredis Cluster client, spread over every master', async () => {
    const redis = clusterClient();
    const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`);
    await Promise.all(keys.map((key) => redis.set(key, key.toUpperCase())));
    expect(await Promise.all(keys.map((key) => redis.get(key)))).toEqual(keys.map((key) => key.toUpperCase()));
    const sizes = await Promise.all(cluster.nodes.map((node) => dbsize(node.port)));
    for (const size of sizes) expect(size).toBeGreaterThan(0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(200);
  });

  it('restarts a killed node empty, on the same port, still owning its slots', async () => {
    const [first, second] = cluster.nodes;
    if (!first || !second) throw new Error('three nodes expected');
    expect(await dbsize(first.port)).toBeGreaterThan(0);
    const keptElsewhere = await dbsize(second.port);
    await first.kill();
    await expect(send(first.port, 'PING')).rejects.toThrow(/ECONNREFUSED/);
    await first.start();

    expect(await dbsize(first.port)).toBe(0);
    expect(await dbsize(second.port)).toBe(keptElsewhere);
    expect((await slotOwners(second.port))[0]).toEqual([0, 5460, first.port]);
    expect(String(await send(first.port, 'CLUSTER', 'INFO'))).toContain('cluster_state:ok');
    const redis = clusterClient();
    const keys = Array.from({ length: 50 }, (_, i) => `after-restart:${i}`);
    await Promise.all(keys.map((key) => redis.set(key, '1')));
    expect(await Promise.all(keys.map((key) => redis.get(key)))).toEqual(keys.map(() => '1'));
  });

  it.each<[string, StartRedisClusterOptions]>([
    ['masters', { masters: 0 }],
    ['masters', { masters: 1.5 }],
    ['masters', { masters: 65 }],
    ['nodeTimeoutMs', { nodeTimeoutMs: 10 }],
    ['startTimeoutMs', { startTimeoutMs: -1 }],
  ])('rejects a bad %s with INVALID_OPTION', async (option, options) => {
    const error = await startRedisCluster(options).then(
      async (started) => {
        await started.stop();
        return undefined;
      },
      (thrown: unknown) => thrown,
    );
    expect(isTestkitError(error) && error.code).toBe('INVALID_OPTION');
    expect((error as Error).message).toContain(option);
  });

  it('refuses a redis-server older than 7.0 with UNSUPPORTED', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lagless-fake-redis-'));
    try {
      const binary = join(dir, 'redis-server');
      writeFileSync(binary, '#!/bin/sh\necho "Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64"\n', {
        mode: 0o755,
      });
      await expect(startRedisCluster({ binary })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stop() kills every node, frees every port and removes its directory', async () => {
    const { dir } = cluster;
    const ports = cluster.nodes.flatMap((node) => [node.port, node.busPort]);
    expect(existsSync(dir)).toBe(true);
    await cluster.stop();
    expect(existsSync(dir)).toBe(false);
    for (const port of ports) expect(await canListen(port)).toBe(true);
    await cluster.stop(); // idempotent
    await expect(cluster.nodes[0]?.start()).rejects.toMatchObject({ code: 'NOT_RUNNING' });
  });

  it('is killed, its directory removed, when the process that started it exits', async () => {
    const script =
      "import { startRedisCluster } from './packages/testkit/src/redis-cluster.ts';" +
      'const cluster = await startRedisCluster({ masters: 1 });' +
      'console.log(JSON.stringify({ dir: cluster.dir, ports: [cluster.nodes[0].port, cluster.nodes[0].busPort] }));';
    const { code, stdout: output } = await runScript(script);
    expect(code).toBe(0);
    const { dir, ports } = JSON.parse(output) as { dir: string; ports: number[] };
    expect(ports).toHaveLength(2);
    expect(existsSync(dir)).toBe(false);
    for (const port of ports) await waitFor(`port ${port} to be freed`, () => canListen(port), 5_000);
  });
});
