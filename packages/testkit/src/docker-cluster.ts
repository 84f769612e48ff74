import type { NodeConnection } from './admin-client.js';
import type { Cluster } from './cluster.js';
import { TestkitError } from './errors.js';
import { Primary, Replica, waitForReplicas } from './nodes.js';

export interface DockerClusterConfig {
  readonly replicas: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly startTimeoutMs: number;
  /** @default process.env.LAGLESS_DOCKER_IMAGE ?? 'postgres:17' */
  readonly image?: string | undefined;
}

/**
 * The same topology in containers, through testcontainers, for machines with a Docker engine.
 * Replicas are bootstrapped with pg_basebackup. Only SQL-level faults are offered: process-level
 * ones would need container restarts, which re-map ports.
 */
export async function startDockerCluster(config: DockerClusterConfig): Promise<Cluster> {
  let tc: typeof import('testcontainers');
  try {
    tc = await import('testcontainers');
  } catch (error) {
    throw new TestkitError(
      'START_FAILED',
      'the docker provider needs the optional peer `testcontainers`: npm i -D testcontainers',
      {
        cause: error,
      },
    );
  }
  const image = config.image ?? process.env.LAGLESS_DOCKER_IMAGE ?? 'postgres:17';
  const network = await new tc.Network().start();
  const started: Array<{ stop(): Promise<unknown> }> = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(started.reverse().map((c) => c.stop()));
    started.length = 0;
    await network.stop().catch(() => {});
  };
  try {
    const primaryContainer = await new tc.GenericContainer(image)
      .withNetwork(network)
      .withNetworkAliases('primary')
      .withEnvironment({ POSTGRES_USER: config.user, POSTGRES_PASSWORD: config.password, POSTGRES_DB: config.database })
      .withCommand([
        'postgres',
        ...['wal_level=replica', 'max_wal_senders=20', 'max_replication_slots=20', 'hot_standby_feedback=on'].flatMap(
          (s) => ['-c', s],
        ),
      ])
      .withCopyContentToContainer([
        {
          content: 'echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"\n',
          target: '/docker-entrypoint-initdb.d/10-replication.sh',
        },
      ])
      .withExposedPorts(5432)
      // The entrypoint starts a temporary server for init scripts first: the second "ready" is the real one.
      .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .withStartupTimeout(config.startTimeoutMs)
      .start();
    started.push(primaryContainer);
    const connectionOf = (container: { getHost(): string; getMappedPort(port: number): number }): NodeConnection => ({
      host: container.getHost(),
      port: container.getMappedPort(5432),
      user: config.user,
      password: config.password,
      database: config.database,
    });
    const primary = new Primary('primary', connectionOf(primaryContainer), { provider: 'docker' });

    const names = Array.from({ length: config.replicas }, (_, i) => `replica${i + 1}`);
    const replicaContainers = await Promise.all(
      names.map((name) =>
        new tc.GenericContainer(image)
          .withNetwork(network)
          .withUser('postgres')
          .withEnvironment({ PGPASSWORD: config.password })
          .withEntrypoint([
            'bash',
            '-c',
            [
              'set -e',
              'export PGDATA=/var/lib/postgresql/data',
              `pg_basebackup -d "host=primary user=${config.user} application_name=${name}" -D "$PGDATA" -R -X stream -C -S ${name}`,
              'chmod 700 "$PGDATA"',
              'exec postgres -c hot_standby=on -c hot_standby_feedback=on',
            ].join('\n'),
          ])
          .withExposedPorts(5432)
          .withWaitStrategy(tc.Wait.forLogMessage(/ready to accept read-only connections/))
          .withStartupTimeout(config.startTimeoutMs)
          .start(),
      ),
    );
    started.push(...replicaContainers);
    const replicas = replicaContainers.map(
      (container, i) =>
        new Replica(names[i] ?? `replica${i + 1}`, connectionOf(container), {
          primary,
          startTimeoutMs: config.startTimeoutMs,
          provider: 'docker',
        }),
    );
    await primary.waitUntilStreaming(names, config.startTimeoutMs);
    const [info] = await primary.query<{ id: string; version: string }>(
      "SELECT system_identifier::text AS id, current_setting('server_version') AS version FROM pg_control_system()",
    );
    return {
      provider: 'docker',
      serverVersion: info?.version.split(' ')[0] ?? '',
      systemIdentifier: info?.id ?? '',
      database: config.database,
      dir: undefined,
      primary,
      replicas,
      waitForReplicas: ({ timeoutMs = 10_000 } = {}) => waitForReplicas(primary, replicas, timeoutMs),
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    throw error instanceof TestkitError
      ? error
      : new TestkitError('START_FAILED', `docker cluster failed to start: ${(error as Error).message}`, {
          cause: error,
        });
  }
}
