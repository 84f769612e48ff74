// The example runs as documented, for both drivers, and shows what it claims.
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runExample } from './app.js';
import { migration } from './schema.js';

describe('examples/drizzle', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ replicas: 2 });
    for (const statement of migration) await cluster.primary.query(statement);
    await cluster.waitForReplicas();
  });
  afterAll(() => cluster?.stop());

  it.each(['node-postgres', 'postgres.js'] as const)('runs over %s', async (driver) => {
    const result = await runExample(
      driver,
      { primary: cluster.primary.url, replicas: cluster.replicas.map((replica) => replica.url) },
      { pauseOneReplica: () => cluster.replicas[0]?.pauseReplay() ?? Promise.resolve() },
    );
    await cluster.replicas[0]?.resumeReplay();
    expect(result.insertPort).toBe(cluster.primary.port);
    expect(cluster.replicas.map((replica) => replica.port)).toContain(result.selectPort);
    expect(result.readAfterWrite).toBe(`hello from ${driver}`);
    expect(result.stats.replicas).toHaveLength(2);
  });
});
