// The example runs as documented and shows what it claims.
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runExample, SCHEMA_SQL } from './app.js';

describe('examples/prisma', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ replicas: 2 });
    for (const statement of SCHEMA_SQL) await cluster.primary.query(statement);
    await cluster.waitForReplicas();
  });
  afterAll(() => cluster?.stop());

  it('routes, reads its writes in a session and reports stats', async () => {
    const result = await runExample(
      { primary: cluster.primary.url, replicas: cluster.replicas.map((r) => r.url) },
      { pauseOneReplica: async () => cluster.replicas[0]?.pauseReplay() },
    );
    expect(cluster.replicas.map((r) => r.port)).toContain(result.replicaPort);
    expect(result.primaryPort).toBe(cluster.primary.port);
    expect(result.readAfterWrite).toMatch(/^ada-\d+@example\.com$/);
    expect(typeof result.token).toBe('string');
    expect(result.stats.replicas).toHaveLength(2);
    expect(result.stats.writes).toBeGreaterThan(0);
  });
});
