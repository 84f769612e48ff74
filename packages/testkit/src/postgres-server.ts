import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestkitError } from './errors.js';
import type { OsUser } from './os-user.js';
import { isAlive, processTree, signalAll } from './process-tree.js';

export interface PostgresServerSpec {
  readonly name: string;
  readonly binDir: string;
  readonly dataDir: string;
  port: number;
  readonly logFile: string;
  readonly osUser: OsUser | undefined;
}

export type ServerState = 'running' | 'stopped' | 'frozen';

const POLL_MS = 15;

/** Environment for server processes: nothing of ours (PGDATA, PGPORT...) leaks into them. */
export function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' };
}

export function tailOfFile(path: string, lines = 25): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** One postmaster we started; it lives in its own session so a terminal's Ctrl-C reaches only us. */
export class PostgresServer {
  readonly spec: PostgresServerSpec;
  #child: ChildProcess | undefined;
  #exit: Promise<void> | undefined;
  #frozen: number[] | undefined;

  constructor(spec: PostgresServerSpec) {
    this.spec = spec;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get state(): ServerState {
    if (!this.#child) return 'stopped';
    return this.#frozen ? 'frozen' : 'running';
  }

  /** Starts the postmaster and resolves once it accepts connections (or, for a standby, read-only ones). */
  async start(timeoutMs: number): Promise<void> {
    if (this.#child) return;
    const { binDir, dataDir, port, logFile, osUser } = this.spec;
    const log = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(join(binDir, 'postgres'), ['-D', dataDir, '-p', String(port)], {
        detached: true,
        stdio: ['ignore', log, log],
        env: serverEnv(),
        ...(osUser ? { uid: osUser.uid, gid: osUser.gid } : {}),
      });
    } finally {
      closeSync(log);
    }
    // Our event loop must not wait on the server; exit handlers stop it.
    child.unref();
    this.#child = child;
    this.#exit = new Promise((resolve) => {
      child.once('exit', () => {
        if (this.#child === child) {
          this.#child = undefined;
          this.#frozen = undefined;
        }
        resolve();
      });
      child.once('error', () => resolve());
    });
    const deadline = Date.now() + timeoutMs;
    const pidFile = join(dataDir, 'postmaster.pid');
    while (Date.now() < deadline) {
      if (this.#child !== child) {
        throw new TestkitError('START_FAILED', `${this.spec.name}: postgres exited during start-up`, {
          logTail: tailOfFile(logFile),
        });
      }
      if (existsSync(pidFile)) {
        // Line 8 of postmaster.pid is the postmaster's status ("ready" or "standby" once it takes connections).
        // A killed postmaster leaves its file behind, saying "ready": only our child's own file counts.
        const lines = readFileSync(pidFile, 'utf8').split('\n');
        const status = lines[7]?.trim();
        if (Number(lines[0]) === child.pid && (status === 'ready' || status === 'standby')) return;
      }
      await sleep(POLL_MS);
    }
    await this.kill();
    throw new TestkitError('TIMEOUT', `${this.spec.name}: postgres did not become ready within ${timeoutMs} ms`, {
      logTail: tailOfFile(logFile),
    });
  }

  /** Fast shutdown (SIGINT): ends sessions, writes a shutdown checkpoint. Falls back to kill(). */
  async stop(timeoutMs = 15_000): Promise<void> {
    const child = this.#child;
    if (!child?.pid) return;
    this.thaw();
    signalAll([child.pid], 'SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      this.#exit?.then(() => true) ?? true,
      new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, false);
      }),
    ]);
    clearTimeout(timer);
    if (!exited) await this.kill();
    await this.#waitGone([child.pid]);
  }

  /** SIGKILL to the postmaster and every process under it, as a crash or the OOM killer would. */
  async kill(): Promise<void> {
    const pid = this.#child?.pid;
    if (!pid) return;
    const tree = processTree(pid);
    signalAll(tree, 'SIGKILL');
    await this.#waitGone(tree);
  }

  /** Same as kill(), synchronously, for exit handlers. */
  killSync(): void {
    const pid = this.#child?.pid;
    if (pid) signalAll(processTree(pid), 'SIGKILL');
  }

  /**
   * SIGSTOP to the postmaster and all its children, so open connections hang too, not only new ones:
   * a server that accepts TCP but never answers, like a stuck host.
   */
  freeze(): void {
    const pid = this.#child?.pid;
    if (!pid || this.#frozen) return;
    const tree = processTree(pid);
    signalAll(tree, 'SIGSTOP');
    this.#frozen = tree;
  }

  thaw(): void {
    if (!this.#frozen) return;
    signalAll(this.#frozen, 'SIGCONT');
    this.#frozen = undefined;
  }

  async #waitGone(pids: readonly number[], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (pids.some(isAlive)) {
      if (Date.now() > deadline) {
        throw new TestkitError(
          'TIMEOUT',
          `${this.spec.name}: processes ${pids.filter(isAlive).join(', ')} did not exit`,
        );
      }
      await sleep(POLL_MS);
    }
    await this.#exit;
  }
}
