import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { onProcessExit } from './cleanup.js';
import { TestkitError } from './errors.js';
import { freePort } from './ports.js';
import { serverEnv } from './postgres-server.js';
import { LocalRedisServer, resolveRedisBinary, startOnFreshPorts, validateStartTimeout } from './redis-server.js';
import { respCommand } from './resp.js';

const run = promisify(execFile);

export interface StartRedisClusterOptions {
  /** Number of masters; the 16384 hash slots are split evenly across them. No replicas. @default 3 */
  masters?: number;
  /** Path of the `redis-server` executable (7.0 or newer). @default found like `startRedis()` finds it */
  binary?: string;
  /**
   * Bound on start-up, and on each node's restart, in milliseconds. A master that starts waits
   * 2 s before it declares the cluster usable (Redis's own writable delay), so this is never quick.
   * @default 20_000
   */
  startTimeoutMs?: number;
  /**
   * `cluster-node-timeout`: how long a master may not answer before the others count it as failing
   * (and, with no replica to fail over to, the whole cluster reports `cluster_state:fail`). Shorter
   * than Redis's 15 s so a fault test does not wait long; long enough not to flap on a busy machine.
   * @default 5_000
   */
  nodeTimeoutMs?: number;
}

/** One master of a {@link RedisCluster}. */
export interface RedisClusterNode {
  /** Always `127.0.0.1`. */
  readonly host: string;
  /** Client port; the same across `stop()`/`kill()` and `start()`. */
  readonly port: number;
  /** Cluster bus port (node-to-node gossip), also fixed. */
  readonly busPort: number;
  /** `redis://127.0.0.1:<port>`: no password. */
  readonly url: string;
  /** Orderly shutdown (SIGTERM); resolves once the process has exited. No-op when stopped. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would; resolves once the process has exited. No-op when stopped. */
  kill(): Promise<void>;
  /**
   * Starts a stopped or killed node again on the same ports. It comes back EMPTY (no persistence)
   * but owning the same slots. Resolves once it answers and, when every node of the cluster is
   * running, once every node reports `cluster_state:ok` again (at least 2 s: the writable delay).
   * Rejects with `NOT_RUNNING` once the cluster has been stopped.
   */
  start(): Promise<void>;
}

/** A local Redis Cluster of masters only, made by {@link startRedisCluster}. */
export interface RedisCluster extends AsyncDisposable {
  /** The masters, in slot order: the first owns slot 0. */
  readonly nodes: readonly RedisClusterNode[];
  /** A fresh `[{ host, port }, ...]` on each read, to pass to `new Cluster(startupNodes)` (ioredis). */
  readonly startupNodes: { host: string; port: number }[];
  /** Temporary directory holding each node's `nodes.conf`; removed by `stop()`. */
  readonly dir: string;
  /** Kills every node and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const SLOTS = 16_384;
const MAX_MASTERS = 64;
const DEFAULT_MASTERS = 3;
const DEFAULT_START_TIMEOUT_MS = 20_000;
const DEFAULT_NODE_TIMEOUT_MS = 5_000;
const POLL_MS = 50;
const MIN_REDIS_MAJOR = 7;

/**
 * Starts a Redis Cluster of `masters` redis-server processes on loopback, with no persistence and no
 * replicas, and resolves once every node reports `cluster_state:ok` and knows every master.
 * Everything it started is killed, and its directory removed, on `stop()` or when the process exits.
 */
export async function startRedisCluster(options: StartRedisClusterOptions = {}): Promise<RedisCluster> {
  if (typeof options !== 'object' || options === null) {
    throw invalid('options', 'an object', options);
  }
  const {
    masters = DEFAULT_MASTERS,
    binary,
    startTimeoutMs = DEFAULT_START_TIMEOUT_MS,
    nodeTimeoutMs = DEFAULT_NODE_TIMEOUT_MS,
  } = options;
  if (typeof masters !== 'number' || !Number.isInteger(masters) || masters < 1 || masters > MAX_MASTERS) {
    throw invalid('masters', `an integer from 1 to ${MAX_MASTERS}`, masters);
  }
  validateStartTimeout(startTimeoutMs);
  if (typeof nodeTimeoutMs !== 'number' || !Number.isInteger(nodeTimeoutMs) || nodeTimeoutMs < 100) {
    throw invalid('nodeTimeoutMs', 'an integer of at least 100 milliseconds', nodeTimeoutMs);
  }
  const executable = resolveRedisBinary(binary);
  await requireClusterSupport(executable);

  const dir = mkdtempSync(join(tmpdir(), 'lagless-redis-cluster-'));
  const nodes: ClusterMember[] = [];
  const removeExitCleanup = onProcessExit(() => {
    // Optional: a node whose start-up never began has no entry.
    for (const node of nodes) node?.server.killSync();
    rmSync(dir, { recursive: true, force: true });
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      // Killed, not stopped: the data goes with the directory anyway, and SIGKILL cannot hang.
      await Promise.allSettled(nodes.map((node) => node.server.kill()));
      rmSync(dir, { recursive: true, force: true });
      removeExitCleanup();
    })();
    return stopped;
  };

  const deadline = Date.now() + startTimeoutMs;
  try {
    const taken = new Set<number>();
    const distinctFreePort = async (): Promise<number> => {
      for (;;) {
        const port = await freePort();
        if (!taken.has(port)) {
          taken.add(port);
          return port;
        }
      }
    };
    // Settled, not all(): on a failure, stop() must not run while other nodes are still starting.
    const started = await Promise.allSettled(
      Array.from({ length: masters }, (_, index) =>
        startOnFreshPorts(async () => {
          const port = await distinctFreePort();
          const busPort = await distinctFreePort();
          // A fresh directory per attempt: a failed one may have written a nodes.conf for other ports.
          const nodeDir = join(dir, `node-${index + 1}`);
          rmSync(nodeDir, { recursive: true, force: true });
          mkdirSync(nodeDir);
          const server = new LocalRedisServer(executable, port, startTimeoutMs, {
            cwd: nodeDir,
            args: clusterArgs(nodeDir, busPort, nodeTimeoutMs),
          });
          nodes[index] = { server, busPort };
          return server;
        }, true),
      ),
    );
    const failed = started.find((outcome) => outcome.status === 'rejected');
    if (failed) throw failed.reason;
    const members = [...nodes];

    for (const [index, { server }] of members.entries()) {
      // As `redis-cli --cluster create` does: distinct epochs up front, so no collision has to be
      // resolved through gossip while the cluster forms.
      await respCommand(HOST, server.port, ['CLUSTER', 'SET-CONFIG-EPOCH', index + 1]);
      const first = Math.floor((index * SLOTS) / masters);
      const last = Math.floor(((index + 1) * SLOTS) / masters) - 1;
      await respCommand(HOST, server.port, ['CLUSTER', 'ADDSLOTSRANGE', first, last]);
    }
    // Every pair meets directly rather than through gossip, which takes a round of pings per hop.
    for (const [index, { server }] of members.entries()) {
      for (const other of members.slice(index + 1)) {
        await respCommand(HOST, server.port, ['CLUSTER', 'MEET', HOST, other.server.port, other.busPort]);
      }
    }
    await waitUntilHealthy(members, deadline, startTimeoutMs);

    const clusterNodes = members.map((member) =>
      publicNode(member, members, startTimeoutMs, () => stopped !== undefined),
    );
    return {
      nodes: clusterNodes,
      get startupNodes() {
        return members.map(({ server }) => ({ host: HOST, port: server.port }));
      },
      dir,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    if (error instanceof TestkitError) throw error;
    throw new TestkitError('START_FAILED', `could not form the Redis Cluster: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

interface ClusterMember {
  readonly server: LocalRedisServer;
  readonly busPort: number;
}

function clusterArgs(nodeDir: string, busPort: number, nodeTimeoutMs: number): string[] {
  return [
    ...['--cluster-enabled', 'yes'],
    ...['--cluster-config-file', 'nodes.conf'],
    // Fixed rather than port + 10000, which overflows for ports above 55535.
    ...['--cluster-port', String(busPort)],
    ...['--cluster-node-timeout', String(nodeTimeoutMs)],
    // A node that was never met would announce an empty address in CLUSTER SLOTS.
    ...['--cluster-announce-ip', HOST],
    ...['--dir', nodeDir],
  ];
}

function publicNode(
  member: ClusterMember,
  members: readonly ClusterMember[],
  timeoutMs: number,
  clusterStopped: () => boolean,
): RedisClusterNode {
  const { server, busPort } = member;
  return {
    host: HOST,
    port: server.port,
    busPort,
    url: server.url,
    stop: () => server.stop(),
    kill: () => server.kill(),
    start: async () => {
      if (clusterStopped()) {
        throw new TestkitError('NOT_RUNNING', `Redis Cluster node ${server.port}: the cluster was stopped`);
      }
      await server.start();
      // With a node still down its slots stay uncovered: the cluster cannot be ok, nothing to wait for.
      if (members.every((m) => m.server.running)) {
        await waitUntilHealthy(members, Date.now() + timeoutMs, timeoutMs);
      }
    },
  };
}

/** `CLUSTER INFO` as name → value. */
async function clusterInfo(port: number): Promise<Map<string, string>> {
  const reply = await respCommand(HOST, port, ['CLUSTER', 'INFO']);
  const info = new Map<string, string>();
  for (const line of String(reply).split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) info.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return info;
}

/** Why `port` does not yet see a healthy cluster of `masters` masters, or undefined once it does. */
async function unhealthyBecause(port: number, masters: number): Promise<string | undefined> {
  let info: Map<string, string>;
  try {
    info = await clusterInfo(port);
  } catch (error) {
    return (error as Error).message;
  }
  const expected: Record<string, string> = {
    cluster_state: 'ok',
    cluster_slots_ok: String(SLOTS),
    // Nodes still in handshake count as known; masters serving slots (cluster_size) rule them out.
    cluster_known_nodes: String(masters),
    cluster_size: String(masters),
  };
  const wrong = Object.entries(expected).filter(([name, value]) => info.get(name) !== value);
  return wrong.length === 0 ? undefined : wrong.map(([name]) => `${name}:${info.get(name)}`).join(' ');
}

async function waitUntilHealthy(members: readonly ClusterMember[], deadline: number, timeoutMs: number) {
  for (;;) {
    const reasons = await Promise.all(members.map(({ server }) => unhealthyBecause(server.port, members.length)));
    if (reasons.every((reason) => reason === undefined)) return;
    if (Date.now() > deadline) {
      const detail = members.map(({ server }, i) => `${server.port}: ${reasons[i] ?? 'ok'}`).join('; ');
      throw new TestkitError('TIMEOUT', `Redis Cluster not ok within ${timeoutMs} ms (${detail})`);
    }
    await sleep(POLL_MS);
  }
}

/** Cluster nodes here need `cluster-port` and `CLUSTER ADDSLOTSRANGE`, both new in Redis 7.0. */
async function requireClusterSupport(executable: string): Promise<void> {
  let version: string | undefined;
  try {
    const { stdout } = await run(executable, ['--version'], { env: serverEnv() });
    version = /\bv=(\d+\.\d+\.\d+)/.exec(stdout)?.[1];
  } catch {
    // A binary that cannot even print its version fails at start, with its own log in the error.
    return;
  }
  const major = Number(version?.split('.')[0]);
  if (version !== undefined && major < MIN_REDIS_MAJOR) {
    throw new TestkitError(
      'UNSUPPORTED',
      `startRedisCluster needs redis-server ${MIN_REDIS_MAJOR}.0 or newer; ${executable} is ${version}`,
    );
  }
}

function invalid(option: string, expected: string, received: unknown): TestkitError {
  return new TestkitError(
    'INVALID_OPTION',
    `Invalid startRedisCluster option ${option}: expected ${expected}, received ${String(received)}`,
  );
}
