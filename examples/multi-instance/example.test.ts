// The example runs as documented: two app processes over one cluster and one Redis, and every read
// made through one app right after a write through the other sees that write.
import { type Cluster, type RedisServer, startCluster, startRedis } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runExample } from './run.js';
import { SCHEMA_SQL } from './schema.js';

describe('examples/multi-instance', () => {
  let cluster: Cluster;
  let redis: RedisServer;
  beforeAll(async () => {
    [cluster, redis] = await Promise.all([startCluster({ replicas: 2 }), startRedis()]);
    for (const statement of SCHEMA_SQL) await cluster.primary.query(statement);
    await cluster.waitForReplicas();
  });
  afterAll(async () => {
    await redis?.stop();
    await cluster?.stop();
  });

  it('reads through one app process what a user wrote through the other', async () => {
    const paused = cluster.replicas[0];
    if (!paused) throw new Error('no replica');
    const result = await runExample(
      {
        primary: { url: cluster.primary.url, port: cluster.primary.port },
        replicas: cluster.replicas.map(({ name, url, port }) => ({ name, url, port })),
        redis: { url: redis.url },
      },
      {
        pauseOneReplica: async () => {
          await paused.pauseReplay();
          return paused.port;
        },
      },
    );
    expect(result.pausedPort).toBe(paused.port);
    expect(result.reads).toHaveLength(20);
    for (const via of ['user id (Redis)', 'token header'] as const) {
      for (const [from, to] of [
        ['prisma', 'drizzle'],
        ['drizzle', 'prisma'],
      ] as const) {
        const these = result.reads.filter((r) => r.via === via && r.wroteThrough === from && r.readThrough === to);
        expect(these, `${via}, ${from} → ${to}`).toHaveLength(5);
        expect(
          these.every((r) => r.sawWrite),
          `${via}, ${from} → ${to}`,
        ).toBe(true);
      }
    }
    // The servers say who ran the reads: never the paused replica, and replicas, not only the primary.
    const ports = result.reads.map((r) => r.servedBy);
    expect(ports).not.toContain(paused.port);
    expect(ports.some((port) => cluster.replicas.some((replica) => replica.port === port))).toBe(true);
    // The control: with neither a user id nor a token, reads of a note just written can miss it.
    expect(result.unprotected.some((r) => !r.sawWrite && r.servedBy === paused.port)).toBe(true);
  });
});
