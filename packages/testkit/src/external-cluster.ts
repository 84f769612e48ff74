import { parseConnectionUrl } from './admin-client.js';
import type { Cluster } from './cluster.js';
import { redactUrl, TestkitError } from './errors.js';
import { Primary, Replica, waitForReplicas } from './nodes.js';

export interface ExternalClusterConfig {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly startTimeoutMs: number;
}

/**
 * A cluster someone else runs (CI service containers, docker-compose). SQL-level faults work when
 * the URLs carry a superuser; process-level ones (stop, kill, freeze) are not ours to do.
 */
export async function connectExternalCluster(config: ExternalClusterConfig): Promise<Cluster> {
  const primary = new Primary('primary', parseConnectionUrl(config.primaryUrl), { provider: 'external' });
  const replicas = config.replicaUrls.map(
    (url, i) =>
      new Replica(`replica${i + 1}`, parseConnectionUrl(url), {
        primary,
        startTimeoutMs: config.startTimeoutMs,
        provider: 'external',
      }),
  );
  const [row] = await primary
    .query<{ id: string; version: string; recovery: boolean }>(
      "SELECT system_identifier::text AS id, current_setting('server_version') AS version, pg_is_in_recovery() AS recovery FROM pg_control_system()",
    )
    .catch((error: Error) => {
      throw new TestkitError(
        'START_FAILED',
        `cannot reach the primary ${redactUrl(config.primaryUrl)}: ${error.message}`,
        {
          cause: error,
        },
      );
    });
  if (!row || row.recovery) {
    throw new TestkitError('START_FAILED', `${redactUrl(config.primaryUrl)} is in recovery: it is not a primary`);
  }
  for (const [i, replica] of replicas.entries()) {
    const [info] = await replica.query<{ id: string; recovery: boolean }>(
      'SELECT system_identifier::text AS id, pg_is_in_recovery() AS recovery FROM pg_control_system()',
    );
    const url = redactUrl(config.replicaUrls[i] ?? '');
    if (!info?.recovery) throw new TestkitError('START_FAILED', `${url} is not in recovery: it is not a replica`);
    if (info.id !== row.id)
      throw new TestkitError('START_FAILED', `${url} belongs to another cluster than the primary`);
  }
  const stop = async (): Promise<void> => {};
  return {
    provider: 'external',
    serverVersion: row.version.split(' ')[0] ?? row.version,
    systemIdentifier: row.id,
    database: primary.connection.database,
    dir: undefined,
    primary,
    replicas,
    waitForReplicas: ({ timeoutMs = 10_000 } = {}) => waitForReplicas(primary, replicas, timeoutMs),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
