import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, resolveBinaries, startCluster } from '../src/index.js';
import { waitFor } from './helpers.js';

describe('external provider (an existing cluster given by URLs)', () => {
  let local: Cluster;
  let external: Cluster;

  beforeAll(async () => {
    local = await startCluster({ replicas: 2, provider: resolveBinaries({ provider: 'auto' }).provider });
    external = await startCluster({
      provider: 'external',
      primaryUrl: local.primary.url,
      replicaUrls: local.replicas.map((r) => r.url),
    });
  });
  afterAll(async () => {
    await external?.stop();
    await local?.stop();
  });

  it('sees the same cluster and offers SQL-level faults', async () => {
    expect(external.provider).toBe('external');
    expect(external.systemIdentifier).toBe(local.systemIdentifier);
    expect(external.replicas.map((r) => r.port)).toEqual(local.replicas.map((r) => r.port));
    await external.primary.query('CREATE TABLE ext (id int)');
    const replica = external.replicas[0];
    if (!replica) throw new Error('replica expected');
    await replica.pauseReplay();
    await external.primary.query('INSERT INTO ext VALUES (1)');
    await external.replicas[1]?.waitForReplay(await external.primary.currentWalLsn());
    expect(await replica.query('SELECT * FROM ext')).toEqual([]);
    await replica.resumeReplay();
    await waitFor('row after resume', async () => (await replica.query('SELECT * FROM ext')).length === 1);
  });

  it('refuses process-level faults with UNSUPPORTED, on replicas and on the primary', async () => {
    await expect(external.replicas[0]?.kill()).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    await expect(external.replicas[0]?.freeze()).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    const { primary } = external;
    for (const fault of [primary.stop, primary.start, primary.kill, primary.freeze, primary.thaw]) {
      await expect(fault.call(primary)).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    }
    expect(primary.state).toBe('running');
    expect(await local.primary.query('SELECT 1 AS up')).toEqual([{ up: 1 }]);
  });

  it('refuses a primary given as a replica, with the password redacted', async () => {
    const error = await startCluster({
      provider: 'external',
      primaryUrl: local.primary.url,
      replicaUrls: [local.primary.url],
    }).catch((e: unknown) => e as Error);
    expect(error).toMatchObject({ code: 'START_FAILED' });
    expect((error as Error).message).toMatch(/not in recovery/);
    expect((error as Error).message).not.toContain(':postgres@');
  });
});
