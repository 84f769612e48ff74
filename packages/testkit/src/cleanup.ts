import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PostgresServer } from './postgres-server.js';
import { isAlive, processTree, signalAll } from './process-tree.js';

/** A cluster directory and the servers started in it, as the exit handlers see them. */
export interface TrackedCluster {
  readonly dir: string;
  readonly servers: PostgresServer[];
  watchdog?: ChildProcess;
}

export const OWNER_FILE = 'owner.pid';

const tracked = new Set<TrackedCluster>();
/** Other synchronous cleanups (e.g. Redis servers), run by the same exit and signal handlers. */
const exitCleanups = new Set<() => void>();
let handlersInstalled = false;

/** Runs `cleanup` when the process exits or dies by SIGINT/SIGTERM/SIGHUP; returns an unregister function. */
export function onProcessExit(cleanup: () => void): () => void {
  installHandlers();
  exitCleanups.add(cleanup);
  return () => {
    exitCleanups.delete(cleanup);
  };
}

function destroySync(cluster: TrackedCluster): void {
  for (const server of cluster.servers) server.killSync();
  rmSync(cluster.dir, { recursive: true, force: true });
  if (cluster.watchdog?.pid) signalAll([cluster.watchdog.pid], 'SIGKILL');
}

function cleanupAllSync(): void {
  for (const cluster of tracked) {
    try {
      destroySync(cluster);
    } catch {
      // Best effort: the watchdog and the next start-up's sweep catch what is left.
    }
  }
  tracked.clear();
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // Best effort, like the rest.
    }
  }
  exitCleanups.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      // If nobody else handles this signal, restore the default behaviour: die by it.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

/**
 * A detached shell that outlives us: when our process dies without running exit handlers
 * (SIGKILL, a crashed worker), it kills the servers recorded in the cluster directory and removes it.
 */
const WATCHDOG_SCRIPT = `
owner=$1; dir=$2
while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
for f in "$dir"/*/postmaster.pid; do
  [ -f "$f" ] || continue
  pid=$(head -n 1 "$f")
  case "$pid" in ''|*[!0-9]*) continue ;; esac
  for child in $(pgrep -P "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null; done
  kill -KILL "$pid" 2>/dev/null
done
sleep 0.2
rm -rf "$dir"
`;

function startWatchdog(dir: string): ChildProcess | undefined {
  try {
    const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'lagless-testkit-watchdog', String(process.pid), dir], {
      detached: true,
      stdio: 'ignore',
    });
    child.on('error', () => {});
    child.unref();
    return child;
  } catch {
    return undefined;
  }
}

export function track(dir: string): TrackedCluster {
  installHandlers();
  const cluster: TrackedCluster = { dir, servers: [] };
  const watchdog = startWatchdog(dir);
  if (watchdog) cluster.watchdog = watchdog;
  tracked.add(cluster);
  return cluster;
}

/** Stops tracking after an orderly stop: the directory is already gone, the watchdog can go. */
export function untrack(cluster: TrackedCluster): void {
  tracked.delete(cluster);
  if (cluster.watchdog?.pid) signalAll([cluster.watchdog.pid], 'SIGKILL');
}

/**
 * Removes clusters whose owning process is gone but whose servers or files were left behind
 * (the watchdog was killed too, or the machine rebooted).
 */
export function sweepStaleClusters(root: string): void {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(root, entry);
    const ownerFile = join(dir, OWNER_FILE);
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, 'utf8').trim());
    if (!owner || isAlive(owner)) continue;
    for (const sub of readdirSync(dir)) {
      const pidFile = join(dir, sub, 'postmaster.pid');
      if (!existsSync(pidFile)) continue;
      const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
      if (pid && isAlive(pid)) signalAll(processTree(pid), 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
