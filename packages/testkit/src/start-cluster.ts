import { resolveBinaries } from './binaries.js';
import type { Cluster, ClusterProvider, StartClusterOptions } from './cluster.js';
import { startDockerCluster } from './docker-cluster.js';
import { TestkitError } from './errors.js';
import { connectExternalCluster } from './external-cluster.js';
import { startLocalCluster } from './local-cluster.js';
import { resolveServerUser } from './os-user.js';

const PROVIDERS: ReadonlyArray<ClusterProvider | 'auto'> = ['auto', 'system', 'embedded', 'docker', 'external'];

function invalid(option: string, expected: string, received: unknown): TestkitError {
  return new TestkitError(
    'INVALID_OPTION',
    `startCluster: ${option} must be ${expected}, received ${JSON.stringify(received)}`,
  );
}

function nonEmpty(option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 63 || value.includes('\0')) {
    throw invalid(option, 'a non-empty string of at most 63 characters', value);
  }
  return value;
}

/** Which provider `auto` means here and now. */
export function resolveProvider(
  requested: ClusterProvider | 'auto' | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ClusterProvider | 'auto' {
  const provider = requested ?? (env.LAGLESS_CLUSTER as ClusterProvider | 'auto' | undefined) ?? 'auto';
  if (!PROVIDERS.includes(provider)) {
    throw invalid(requested === undefined ? 'LAGLESS_CLUSTER' : 'provider', PROVIDERS.join(' | '), provider);
  }
  if (provider === 'auto' && env.LAGLESS_PRIMARY_URL) return 'external';
  return provider;
}

/**
 * Starts a primary and `replicas` streaming replicas (or connects to an existing cluster) and
 * resolves once every replica streams from the primary.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const replicas = options.replicas ?? 2;
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > 32) {
    throw invalid('replicas', 'an integer from 0 to 32', options.replicas);
  }
  const database = nonEmpty('database', options.database ?? 'app');
  const user = nonEmpty('user', options.user ?? 'postgres');
  const password = options.password ?? 'postgres';
  if (typeof password !== 'string' || password.length === 0) throw invalid('password', 'a non-empty string', password);
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  if (!Number.isFinite(startTimeoutMs) || startTimeoutMs <= 0) {
    throw invalid('startTimeoutMs', 'a positive number', options.startTimeoutMs);
  }
  const settings = options.settings ?? {};
  for (const name of Object.keys(settings)) {
    if (!/^[a-z_][a-z0-9_.]*$/i.test(name)) throw invalid(`settings key`, 'a PostgreSQL setting name', name);
  }

  const provider = resolveProvider(options.provider);
  if (provider === 'external') {
    const primaryUrl = options.primaryUrl ?? process.env.LAGLESS_PRIMARY_URL;
    if (!primaryUrl) throw invalid('primaryUrl (or LAGLESS_PRIMARY_URL)', 'a postgres:// URL', primaryUrl);
    const replicaUrls =
      options.replicaUrls ??
      (process.env.LAGLESS_REPLICA_URLS ?? '')
        .split(',')
        .map((url) => url.trim())
        .filter(Boolean);
    return connectExternalCluster({ primaryUrl, replicaUrls, startTimeoutMs });
  }
  if (provider === 'docker') {
    return startDockerCluster({ replicas, database, user, password, startTimeoutMs });
  }
  const binaries = resolveBinaries({ provider, binDir: options.binDir ?? process.env.LAGLESS_PG_BINDIR });
  if (binaries.majorVersion < 14) {
    throw new TestkitError(
      'BINARIES_NOT_FOUND',
      `PostgreSQL ${binaries.version} in ${binaries.binDir} is too old: 14 or newer needed`,
    );
  }
  return startLocalCluster({
    binaries,
    osUser: resolveServerUser(options.osUser ?? process.env.LAGLESS_PG_OS_USER),
    replicas,
    database,
    user,
    password,
    settings,
    startTimeoutMs,
  });
}
