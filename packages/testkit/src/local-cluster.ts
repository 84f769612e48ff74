import { execFile } from 'node:child_process';
import {
  accessSync,
  appendFileSync,
  chmodSync,
  chownSync,
  constants,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NodeConnection } from './admin-client.js';
import { withAdminClient } from './admin-client.js';
import type { PostgresBinaries } from './binaries.js';
import { OWNER_FILE, sweepStaleClusters, track, untrack } from './cleanup.js';
import type { Cluster, NodeProcessControl } from './cluster.js';
import { TestkitError } from './errors.js';
import { Primary, Replica, waitForReplicas } from './nodes.js';
import type { OsUser } from './os-user.js';
import { freePort } from './ports.js';
import { PostgresServer, serverEnv, tailOfFile } from './postgres-server.js';

const run = promisify(execFile);

export interface LocalClusterConfig {
  readonly binaries: PostgresBinaries;
  readonly osUser: OsUser | undefined;
  readonly replicas: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  readonly startTimeoutMs: number;
}

const HOST = '127.0.0.1';

/** Tuned for tests: durability is traded for speed, replication stays real. */
function baseSettings(replicas: number): Record<string, string | number | boolean> {
  return {
    listen_addresses: HOST,
    // Unix sockets would land in a path we do not control the length of; TCP on loopback is enough.
    unix_socket_directories: '',
    wal_level: 'replica',
    max_wal_senders: replicas + 10,
    max_replication_slots: replicas + 10,
    hot_standby: true,
    // Without feedback, vacuum on the primary cancels long replica reads: noise in tests.
    hot_standby_feedback: true,
    wal_receiver_status_interval: '1s',
    // A restarted replica (or one whose primary restarts) reconnects within this, not the default 5 s.
    wal_retrieve_retry_interval: '100ms',
    fsync: false,
    full_page_writes: false,
    max_connections: 200,
    shared_buffers: '64MB',
    jit: false,
    // POSIX segments live in /dev/shm under global names and outlive a SIGKILLed server; mmap files
    // live in the data directory and go with it.
    dynamic_shared_memory_type: 'mmap',
    log_min_messages: 'warning',
  };
}

function confValue(value: string | number | boolean): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') return String(value);
  return `'${value.replace(/'/g, "''")}'`;
}

function confLines(settings: Readonly<Record<string, string | number | boolean>>): string {
  return Object.entries(settings)
    .map(([name, value]) => `${name} = ${confValue(value)}\n`)
    .join('');
}

/** A libpq conninfo value, quoted so spaces, quotes and backslashes in passwords survive. */
function conninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function isPortConflict(logFile: string): boolean {
  return /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(tailOfFile(logFile, 50));
}

/**
 * Where cluster directories go: LAGLESS_TESTKIT_TMPDIR, else /dev/shm where it exists (a cluster
 * writes ~100 MB at start-up; memory makes that a non-cost), else the OS temp directory.
 */
function clusterRoot(): string {
  const uid = process.getuid?.() ?? 0;
  let base = process.env.LAGLESS_TESTKIT_TMPDIR;
  if (!base) {
    try {
      accessSync('/dev/shm', constants.W_OK);
      base = '/dev/shm';
    } catch {
      base = tmpdir();
    }
  }
  return join(base, `lagless-testkit-${uid}`);
}

/** LAGLESS_TESTKIT_DEBUG=1 prints how long each start-up phase took, to find what makes a start slow. */
function phaseTimer(): (phase: string) => void {
  if (!process.env.LAGLESS_TESTKIT_DEBUG) return () => {};
  let last = performance.now();
  return (phase) => {
    const now = performance.now();
    process.stderr.write(`[lagless-testkit] ${phase}: ${Math.round(now - last)} ms\n`);
    last = now;
  };
}

export async function startLocalCluster(config: LocalClusterConfig): Promise<Cluster> {
  const phase = phaseTimer();
  const { binaries, osUser } = config;
  const root = clusterRoot();
  mkdirSync(root, { recursive: true, mode: 0o755 });
  chmodSync(root, 0o755);
  sweepStaleClusters(root);

  const dir = mkdtempSync(join(root, 'cluster-'));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  const tracked = track(dir);
  const own = (path: string): void => {
    if (osUser) chownSync(path, osUser.uid, osUser.gid);
  };
  own(dir);

  const runAsServerUser = (file: string, args: string[]) =>
    run(file, args, { env: serverEnv(), ...(osUser ? { uid: osUser.uid, gid: osUser.gid } : {}) });

  const newServer = async (name: string): Promise<PostgresServer> => {
    const server = new PostgresServer({
      name,
      binDir: binaries.binDir,
      dataDir: join(dir, name),
      port: await freePort(),
      logFile: join(dir, `${name}.log`),
      osUser,
    });
    tracked.servers.push(server);
    return server;
  };

  /** Start, picking a new port when another process took ours between probe and bind. */
  const startFresh = async (server: PostgresServer): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await server.start(config.startTimeoutMs);
        return;
      } catch (error) {
        if (attempt >= 5 || !isPortConflict(server.spec.logFile)) throw error;
        server.spec.port = await freePort();
      }
    }
  };

  let stopped = false;
  const stopAll = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Replicas first, so the primary's walsenders are not waiting on them during its shutdown. Each
    // stop() thaws a frozen server first and is a no-op on a stopped or killed one.
    const [primaryServer, ...replicaServers] = tracked.servers;
    await Promise.allSettled(replicaServers.map((s) => s.stop().catch(() => s.kill())));
    await primaryServer?.stop().catch(() => primaryServer.kill());
    rmSync(dir, { recursive: true, force: true });
    untrack(tracked);
  };

  try {
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${config.password}\n`, { mode: 0o600 });
    own(pwfile);
    const primaryServer = await newServer('primary');
    const primaryDir = primaryServer.spec.dataDir;
    try {
      await runAsServerUser(join(binaries.binDir, 'initdb'), [
        '-D',
        primaryDir,
        '-U',
        config.user,
        `--pwfile=${pwfile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
        // 1 MB WAL segments instead of 16: less to write at start-up and less to copy per replica.
        '--wal-segsize=1',
      ]);
    } catch (error) {
      throw new TestkitError('START_FAILED', `initdb failed: ${(error as { stderr?: string }).stderr ?? error}`, {
        cause: error,
      });
    }
    phase('initdb');
    appendFileSync(
      join(primaryDir, 'postgresql.conf'),
      `\n# lagless testkit\n${confLines({ ...baseSettings(config.replicas), ...config.settings })}`,
    );
    await startFresh(primaryServer);

    phase('primary start');
    const connectionTo = (server: PostgresServer, database = config.database): NodeConnection => ({
      host: HOST,
      port: server.spec.port,
      user: config.user,
      password: config.password,
      database,
    });
    const replicaNames = Array.from({ length: config.replicas }, (_, i) => `replica${i + 1}`);

    const systemIdentifier = await withAdminClient(connectionTo(primaryServer, 'postgres'), async (client) => {
      if (config.database !== 'postgres') await client.query(`CREATE DATABASE ${quoteIdent(config.database)}`);
      // Slots make the primary keep WAL for a replica that is stopped or killed, however long.
      for (const name of replicaNames) {
        await client.query('SELECT pg_create_physical_replication_slot($1, true)', [name]);
      }
      const { rows } = await client.query<{ id: string }>(
        'SELECT system_identifier::text AS id FROM pg_control_system()',
      );
      return rows[0]?.id ?? '';
    });

    phase('create database and slots');
    // Each replica starts as a copy of the cleanly shut-down primary: no pg_basebackup needed, so the
    // embedded binaries (which lack it) work the same way as system ones.
    await primaryServer.stop();
    phase('primary stop');
    const replicaServers: PostgresServer[] = [];
    for (const name of replicaNames) {
      const server = await newServer(name);
      await run('cp', ['-a', primaryDir, server.spec.dataDir]);
      const conninfo = [
        `host=${HOST}`,
        `port=${primaryServer.spec.port}`,
        `user=${conninfoValue(config.user)}`,
        `password=${conninfoValue(config.password)}`,
        `application_name=${name}`,
      ].join(' ');
      appendFileSync(
        join(server.spec.dataDir, 'postgresql.auto.conf'),
        confLines({ primary_conninfo: conninfo, primary_slot_name: name }),
      );
      writeFileSync(join(server.spec.dataDir, 'standby.signal'), '');
      own(join(server.spec.dataDir, 'standby.signal'));
      replicaServers.push(server);
    }
    phase('copy replicas');
    // The primary first: a replica that finds it down waits wal_retrieve_retry_interval before retrying.
    await primaryServer.start(config.startTimeoutMs);
    await Promise.all(replicaServers.map(startFresh));

    phase('start all');
    const primary = new Primary('primary', connectionTo(primaryServer), {
      control: processControl(primaryServer, config.startTimeoutMs),
      provider: binaries.provider,
    });
    const replicas = replicaServers.map(
      (server) =>
        new Replica(server.spec.name, connectionTo(server), {
          primary,
          control: processControl(server, config.startTimeoutMs),
          startTimeoutMs: config.startTimeoutMs,
          provider: binaries.provider,
        }),
    );
    await primary.waitUntilStreaming(replicaNames, config.startTimeoutMs);

    phase('wait streaming');
    return {
      provider: binaries.provider,
      serverVersion: binaries.version,
      systemIdentifier,
      database: config.database,
      dir,
      primary,
      replicas,
      waitForReplicas: ({ timeoutMs = 10_000 } = {}) => waitForReplicas(primary, replicas, timeoutMs),
      stop: stopAll,
      [Symbol.asyncDispose]: stopAll,
    };
  } catch (error) {
    const logs = tracked.servers.map((s) => `[${s.spec.name}]\n${tailOfFile(s.spec.logFile, 10)}`).join('\n');
    await stopAll().catch(() => {});
    if (error instanceof TestkitError) throw error;
    throw new TestkitError('START_FAILED', `could not start the cluster: ${(error as Error).message}`, {
      cause: error,
      logTail: logs,
    });
  }
}

function processControl(server: PostgresServer, startTimeoutMs: number): NodeProcessControl {
  return {
    get state() {
      return server.state;
    },
    stop: () => server.stop(),
    start: () => server.start(startTimeoutMs),
    kill: () => server.kill(),
    freeze: async () => server.freeze(),
    thaw: async () => server.thaw(),
  };
}
