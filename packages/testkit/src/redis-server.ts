import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isExecutable } from './binaries.js';
import { onProcessExit } from './cleanup.js';
import { TestkitError } from './errors.js';
import { freePort } from './ports.js';
import { serverEnv } from './postgres-server.js';
import { signalAll } from './process-tree.js';

export interface StartRedisOptions {
  /** Loopback port to listen on. @default a free port */
  port?: number;
  /** Path of the `redis-server` executable. @default found on PATH, then in /usr/bin, /usr/local/bin, /opt/homebrew/bin */
  binary?: string;
  /** Bound on start-up (and on each restart), in milliseconds. @default 10_000 */
  startTimeoutMs?: number;
}

export interface RedisServer extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>`: no password, database 0. */
  readonly url: string;
  readonly port: number;
  /** Orderly shutdown (SIGTERM); resolves once the process has exited. */
  stop(): Promise<void>;
  /** Starts a stopped or killed server again, on the same port; resolves once it answers PING. */
  start(): Promise<void>;
  /** SIGKILL, as a crash would; resolves once the process has exited. */
  kill(): Promise<void>;
}

const HOST = '127.0.0.1';
const FALLBACK_DIRS: readonly string[] = ['/usr/bin', '/usr/local/bin', '/opt/homebrew/bin'];
const DEFAULT_START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 15;
const PROBE_TIMEOUT_MS = 1_000;
const LOG_LINES = 25;
// A port picked by freePort() may be taken by someone else before the server binds it.
const PORT_ATTEMPTS = 3;

/**
 * Starts a throwaway redis-server on loopback: no persistence, so a server restarted after `stop()`
 * or `kill()` comes back empty; no password; gone when the process exits.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const { port, binary, startTimeoutMs = DEFAULT_START_TIMEOUT_MS } = options;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65_535)) {
    throw new TestkitError(
      'INVALID_OPTION',
      `Invalid option port: expected an integer from 1 to 65535, received ${port}`,
    );
  }
  validateStartTimeout(startTimeoutMs);
  const executable = resolveRedisBinary(binary);
  return startOnFreshPorts(
    async () => new LocalRedisServer(executable, port ?? (await freePort()), startTimeoutMs),
    port === undefined,
  );
}

/** Throws INVALID_OPTION unless `startTimeoutMs` is a positive, finite number. */
export function validateStartTimeout(startTimeoutMs: unknown): void {
  if (typeof startTimeoutMs !== 'number' || !Number.isFinite(startTimeoutMs) || startTimeoutMs <= 0) {
    throw new TestkitError(
      'INVALID_OPTION',
      `Invalid option startTimeoutMs: expected a positive number, received ${String(startTimeoutMs)}`,
    );
  }
}

/**
 * Starts the server `create` makes; when `retry` and a port it picked was taken between probe and
 * bind, starts a new one from `create` (which picks new ports).
 */
export async function startOnFreshPorts(
  create: () => Promise<LocalRedisServer>,
  retry: boolean,
): Promise<LocalRedisServer> {
  for (let attempt = 1; ; attempt++) {
    const server = await create();
    try {
      await server.start();
      return server;
    } catch (error) {
      const portTaken = error instanceof TestkitError && /address already in use/i.test(error.message);
      if (!retry || !portTaken || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

/**
 * The redis-server to run: `binary` when given, else the first one on `env.PATH`, else in
 * `fallbackDirs` (PATH is often minimal under CI runners and IDEs). Exported for tests.
 */
export function resolveRedisBinary(
  binary?: string,
  env: NodeJS.ProcessEnv = process.env,
  fallbackDirs: readonly string[] = FALLBACK_DIRS,
): string {
  if (binary !== undefined) {
    if (isExecutable(binary)) return binary;
    throw new TestkitError('BINARIES_NOT_FOUND', `redis-server "${binary}" is not an executable file`);
  }
  const dirs = [...(env.PATH ?? '').split(delimiter).filter((dir) => dir.length > 0), ...fallbackDirs];
  for (const dir of dirs) {
    const candidate = join(dir, 'redis-server');
    if (isExecutable(candidate)) return candidate;
  }
  throw new TestkitError(
    'BINARIES_NOT_FOUND',
    'redis-server not found on PATH or in ' +
      `${fallbackDirs.join(', ') || '(no fallback directories)'}: install it (\`apt-get install redis-server\`, ` +
      '`brew install redis`) or pass `binary`',
  );
}

// Children still running, SIGKILLed when this process exits however it exits normally. They are
// not detached, so a Ctrl-C in a terminal reaches them through the process group as well.
const running = new Set<ChildProcess>();
let exitHandlerInstalled = false;

function killRunningSync(): void {
  for (const child of running) if (child.pid) signalAll([child.pid], 'SIGKILL');
  running.clear();
}

/** Where and how a server runs beyond its port: extra arguments, and the directory it may write to. */
export interface RedisLaunchOptions {
  /** Appended to the arguments every server gets (port, loopback bind, no persistence). */
  readonly args?: readonly string[];
  /** @default the OS temp directory (nothing is written there without persistence) */
  readonly cwd?: string;
}

export class LocalRedisServer implements RedisServer {
  readonly url: string;
  readonly port: number;
  readonly #binary: string;
  readonly #startTimeoutMs: number;
  readonly #launch: RedisLaunchOptions;
  #child: ChildProcess | undefined;
  #exit: Promise<void> | undefined;
  #log: string[] = [];

  constructor(binary: string, port: number, startTimeoutMs: number, launch: RedisLaunchOptions = {}) {
    this.#binary = binary;
    this.port = port;
    this.url = `redis://${HOST}:${port}`;
    this.#startTimeoutMs = startTimeoutMs;
    this.#launch = launch;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  async start(): Promise<void> {
    if (this.#child) return;
    if (!exitHandlerInstalled) {
      exitHandlerInstalled = true;
      onProcessExit(killRunningSync);
    }
    this.#log = [];
    // `--save ''` is one empty argument: no snapshots, so nothing is ever written to the cwd.
    const args = [
      ...['--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no'],
      ...(this.#launch.args ?? []),
    ];
    const child = spawn(this.#binary, args, {
      cwd: this.#launch.cwd ?? tmpdir(),
      detached: false,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: serverEnv(),
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.#append(chunk));
      // Our event loop must not wait on the server or its output; the exit handler stops it.
      (stream as { unref?: () => void } | null)?.unref?.();
    }
    child.unref();
    this.#child = child;
    running.add(child);
    let spawnError: Error | undefined;
    this.#exit = new Promise((resolve) => {
      const gone = (): void => {
        running.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      };
      child.once('exit', gone);
      child.once('error', (error) => {
        spawnError = error;
        gone();
      });
    });

    const deadline = Date.now() + this.#startTimeoutMs;
    while (Date.now() < deadline) {
      if (this.#child !== child) {
        throw new TestkitError('START_FAILED', `redis-server on port ${this.port} exited during start-up`, {
          cause: spawnError,
          logTail: this.#tail(),
        });
      }
      if (child.pid !== undefined && (await probe(this.port)) === child.pid) return;
      await sleep(POLL_MS);
    }
    await this.kill();
    throw new TestkitError(
      'TIMEOUT',
      `redis-server on port ${this.port} did not answer PING within ${this.#startTimeoutMs} ms`,
      {
        logTail: this.#tail(),
      },
    );
  }

  stop(): Promise<void> {
    return this.#signal('SIGTERM', STOP_TIMEOUT_MS);
  }

  kill(): Promise<void> {
    return this.#signal('SIGKILL', STOP_TIMEOUT_MS);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** SIGKILL without waiting, for exit handlers. */
  killSync(): void {
    if (this.#child?.pid !== undefined) signalAll([this.#child.pid], 'SIGKILL');
  }

  async #signal(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    const child = this.#child;
    const exit = this.#exit;
    if (child?.pid === undefined || exit === undefined) return;
    signalAll([child.pid], signal);
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      exit.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, false);
      }),
    ]);
    clearTimeout(timer);
    if (exited) return;
    if (signal === 'SIGKILL') {
      throw new TestkitError('TIMEOUT', `redis-server (pid ${child.pid}) did not exit within ${timeoutMs} ms`);
    }
    await this.#signal('SIGKILL', timeoutMs);
  }

  #append(chunk: string): void {
    this.#log.push(...chunk.split('\n').filter((line) => line.length > 0));
    if (this.#log.length > LOG_LINES) this.#log.splice(0, this.#log.length - LOG_LINES);
  }

  #tail(): string {
    return this.#log.join('\n');
  }
}

/**
 * The pid of the Redis answering on `port`, or undefined while none answers. Over a raw socket so
 * the testkit needs no Redis client. The pid matters: while a server we started is still failing to
 * bind a taken port, someone else's Redis may be the one answering.
 */
function probe(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    let reply = '';
    const finish = (pid: number | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => finish(undefined));
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write('PING\r\nINFO server\r\n'));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n') && !reply.startsWith('+PONG\r\n')) return finish(undefined);
      const pid = /\r\nprocess_id:(\d+)\r\n/.exec(reply)?.[1];
      if (pid !== undefined) finish(Number(pid));
    });
    socket.once('error', () => finish(undefined));
    socket.once('close', () => finish(undefined));
  });
}
