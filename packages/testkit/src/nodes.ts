import { setTimeout as sleep } from 'node:timers/promises';
import { type AdminQueryOptions, adminQuery, connectionUrl, type NodeConnection } from './admin-client.js';
import type {
  ClusterNode,
  NodeProcessControl,
  NodeState,
  PrimaryNode,
  PromoteOptions,
  ReplicaNode,
} from './cluster.js';
import { TestkitError } from './errors.js';

const POLL_MS = 10;

/** Exact comparison of two pg_lsn strings (`16/B374D848`), without floats. */
export function compareLsn(a: string, b: string): number {
  const toBig = (lsn: string): bigint => {
    const [hi, lo] = lsn.split('/');
    return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  };
  const x = toBig(a);
  const y = toBig(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

abstract class SqlNode implements ClusterNode {
  abstract readonly role: ClusterNode['role'];
  readonly name: string;
  readonly connection: NodeConnection;

  constructor(name: string, connection: NodeConnection) {
    this.name = name;
    this.connection = connection;
  }

  get host(): string {
    return this.connection.host;
  }

  get port(): number {
    return this.connection.port;
  }

  get url(): string {
    return connectionUrl(this.connection);
  }

  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params: readonly unknown[] = [],
    options: AdminQueryOptions = {},
  ): Promise<R[]> {
    return adminQuery<R>(this.connection, sql, params, options);
  }

  async queryValue<T>(sql: string, params: readonly unknown[] = [], options: AdminQueryOptions = {}): Promise<T> {
    const [row] = await this.query(sql, params, options);
    return (row ? Object.values(row)[0] : undefined) as T;
  }
}

/** Options every node class takes: process control exists only for providers that own the processes. */
interface NodeOptions {
  readonly control?: NodeProcessControl | undefined;
  /** Named in the UNSUPPORTED error when there is no control. */
  readonly provider: string;
}

/** A node whose server process the provider may own; without a control, process faults are refused. */
abstract class ControlledNode extends SqlNode {
  readonly #control: NodeProcessControl | undefined;
  readonly #provider: string;

  constructor(name: string, connection: NodeConnection, options: NodeOptions) {
    super(name, connection);
    this.#control = options.control;
    this.#provider = options.provider;
  }

  get state(): NodeState {
    return this.#control?.state ?? 'running';
  }

  protected control(operation: string): NodeProcessControl {
    if (!this.#control) {
      throw new TestkitError(
        'UNSUPPORTED',
        `${this.name}.${operation}() is not available with the ${this.#provider} provider`,
      );
    }
    return this.#control;
  }

  async stop(): Promise<void> {
    await this.control('stop').stop();
  }

  async kill(): Promise<void> {
    await this.control('kill').kill();
  }

  async freeze(): Promise<void> {
    await this.control('freeze').freeze();
  }

  async thaw(): Promise<void> {
    await this.control('thaw').thaw();
  }
}

export class Primary extends ControlledNode implements PrimaryNode {
  readonly role = 'primary' as const;

  async start(): Promise<void> {
    await this.control('start').start();
  }

  currentWalLsn(): Promise<string> {
    return this.queryValue<string>('SELECT pg_current_wal_insert_lsn()::text');
  }

  /** Names of replicas the primary currently streams to. */
  async streamingReplicas(): Promise<Set<string>> {
    const rows = await this.query<{ application_name: string }>(
      "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
    );
    return new Set(rows.map((r) => r.application_name));
  }

  async waitUntilStreaming(names: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const streaming = await this.streamingReplicas();
      const missing = names.filter((n) => !streaming.has(n));
      if (missing.length === 0) return;
      if (Date.now() > deadline) {
        throw new TestkitError('TIMEOUT', `replicas not streaming after ${timeoutMs} ms: ${missing.join(', ')}`);
      }
      await sleep(POLL_MS);
    }
  }
}

export class Replica extends ControlledNode implements ReplicaNode {
  readonly role = 'replica' as const;
  readonly #primary: Primary;
  readonly #startTimeoutMs: number;
  #promoted = false;
  #promoting: Promise<void> | undefined;

  constructor(
    name: string,
    connection: NodeConnection,
    options: NodeOptions & { readonly primary: Primary; readonly startTimeoutMs: number },
  ) {
    super(name, connection, options);
    this.#primary = options.primary;
    this.#startTimeoutMs = options.startTimeoutMs;
  }

  get promoted(): boolean {
    return this.#promoted;
  }

  replayLsn(): Promise<string | null> {
    return this.queryValue<string | null>('SELECT pg_last_wal_replay_lsn()::text');
  }

  async waitForReplay(lsn: string, { timeoutMs = 10_000 }: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const replayed = await this.replayLsn();
      if (replayed && compareLsn(replayed, lsn) >= 0) return;
      if (Date.now() > deadline) {
        throw new TestkitError('TIMEOUT', `${this.name} did not replay ${lsn} within ${timeoutMs} ms (at ${replayed})`);
      }
      await sleep(POLL_MS);
    }
  }

  async pauseReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_pause()');
    // pg_wal_replay_pause() only requests the pause; wait until replay has actually stopped.
    const deadline = Date.now() + 10_000;
    while ((await this.queryValue<string>('SELECT pg_get_wal_replay_pause_state()')) !== 'paused') {
      if (Date.now() > deadline) throw new TestkitError('TIMEOUT', `${this.name}: replay did not pause`);
      await sleep(POLL_MS);
    }
  }

  async resumeReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_resume()');
  }

  async setApplyDelay(ms: number): Promise<void> {
    if (!Number.isInteger(ms) || ms < 0) {
      throw new TestkitError('INVALID_OPTION', `setApplyDelay: ms must be a non-negative integer, received ${ms}`);
    }
    await this.query(`ALTER SYSTEM SET recovery_min_apply_delay = '${ms}ms'`);
    await this.query('SELECT pg_reload_conf()');
    // The reload is asynchronous: a new session sees the new value once the postmaster has re-read it.
    const deadline = Date.now() + 10_000;
    while (
      Number(
        await this.queryValue<string>("SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'"),
      ) !== ms
    ) {
      if (Date.now() > deadline) throw new TestkitError('TIMEOUT', `${this.name}: apply delay not applied`);
      await sleep(POLL_MS);
    }
  }

  async start(): Promise<void> {
    await this.control('start').start();
    if (!this.#promoted) await this.#primary.waitUntilStreaming([this.name], this.#startTimeoutMs);
  }

  promote(options: PromoteOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      return Promise.reject(
        new TestkitError('INVALID_OPTION', `promote: timeoutMs must be a positive number, received ${timeoutMs}`),
      );
    }
    if (this.#promoted) return Promise.resolve();
    // A second call while the first runs would make pg_promote() fail with "recovery is not in progress".
    this.#promoting ??= this.#promote(timeoutMs).finally(() => {
      this.#promoting = undefined;
    });
    return this.#promoting;
  }

  async #promote(timeoutMs: number): Promise<void> {
    if (this.state !== 'running') {
      throw new TestkitError('NOT_RUNNING', `${this.name}.promote(): the replica is ${this.state}`);
    }
    if (await this.queryValue<boolean>('SELECT pg_is_in_recovery()')) {
      const seconds = Math.ceil(timeoutMs / 1000);
      // The session waits inside pg_promote(): the query itself must be allowed to outlast it.
      const done = await this.queryValue<boolean>('SELECT pg_promote(true, $1)', [seconds], {
        timeoutMs: seconds * 1000 + 5_000,
      });
      if (!done) throw new TestkitError('TIMEOUT', `${this.name} was not promoted within ${seconds} s`);
    }
    // Checked on a fresh session: that is what the next client of this node will see.
    if (await this.queryValue<boolean>('SELECT pg_is_in_recovery()')) {
      throw new TestkitError('START_FAILED', `${this.name} is still in recovery after pg_promote()`);
    }
    this.#promoted = true;
  }
}

/**
 * Shared by every provider: wait until each running, unpaused, unpromoted replica has replayed the
 * primary's position.
 */
export async function waitForReplicas(
  primary: Primary,
  replicas: readonly Replica[],
  timeoutMs: number,
): Promise<void> {
  if (primary.state !== 'running') {
    throw new TestkitError('NOT_RUNNING', `waitForReplicas(): the primary is ${primary.state}`);
  }
  const lsn = await primary.currentWalLsn();
  const active: Replica[] = [];
  for (const replica of replicas) {
    // A promoted replica has its own timeline: the primary's LSNs say nothing about it.
    if (replica.state !== 'running' || replica.promoted) continue;
    const paused = await replica.queryValue<string>('SELECT pg_get_wal_replay_pause_state()');
    if (paused === 'not paused') active.push(replica);
  }
  await Promise.all(active.map((r) => r.waitForReplay(lsn, { timeoutMs })));
}
