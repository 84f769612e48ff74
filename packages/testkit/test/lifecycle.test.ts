import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive } from '../src/process-tree.js';
import { canListen, clusterProcesses, connect, waitFor } from './helpers.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

function runTs(script: string, args: string[] = []): ChildProcess {
  const child = spawn(process.execPath, ['--conditions=lagless-source', '--import', 'tsx', script, ...args], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return child;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  if (!child.stdout) throw new Error('no stdout');
  return createInterface({ input: child.stdout })[Symbol.asyncIterator]();
}

/** POSIX shared-memory segments of PostgreSQL servers: a SIGKILLed server would leave its own behind. */
function shmSegments(): Set<string> {
  return existsSync('/dev/shm')
    ? new Set(readdirSync('/dev/shm').filter((f) => f.startsWith('PostgreSQL.')))
    : new Set();
}

async function startHolder(): Promise<{
  child: ChildProcess;
  dir: string;
  pids: number[];
  ports: number[];
  segmentsBefore: Set<string>;
}> {
  const segmentsBefore = shmSegments();
  const child = runTs('packages/testkit/test/fixtures/hold-cluster.ts');
  const first = await lines(child).next();
  const { dir, ports } = JSON.parse(String(first.value)) as { dir: string; ports: number[] };
  const pids = clusterProcesses(dir);
  expect(pids.length).toBeGreaterThanOrEqual(6);
  return { child, dir, pids, ports, segmentsBefore };
}

async function expectNothingLeft(holder: {
  dir: string;
  pids: number[];
  ports: number[];
  segmentsBefore: Set<string>;
}): Promise<void> {
  await waitFor('cluster processes to exit', () => holder.pids.every((pid) => !isAlive(pid)));
  await waitFor('cluster directory to be removed', () => !existsSync(holder.dir));
  for (const port of holder.ports) expect(await canListen(port)).toBe(true);
  // Polled: initdb of a cluster another test file starts meanwhile creates and removes segments of
  // its own; one a killed server left behind never goes away.
  const leaked = () => [...shmSegments()].filter((f) => !holder.segmentsBefore.has(f));
  await waitFor('new shared memory segments to go', () => leaked().length === 0, 5_000).catch(() => {});
  expect(leaked()).toEqual([]);
}

describe('an interrupted run', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('cleans up when the owner gets %s', async (signal) => {
    const holder = await startHolder();
    holder.child.kill(signal);
    await expectNothingLeft(holder);
  });

  it('cleans up when the owner is SIGKILLed and runs no handler (watchdog)', async () => {
    const holder = await startHolder();
    holder.child.kill('SIGKILL');
    await expectNothingLeft(holder);
  });
});

describe('lagless-cluster CLI', () => {
  it('prints URLs of a working cluster and removes it on Ctrl-C', async () => {
    const child = runTs('packages/testkit/src/cli.ts', ['up', '--replicas', '1']);
    const out = lines(child);
    const env: Record<string, string> = {};
    while (!env.LAGLESS_REPLICA_URLS) {
      const { value, done } = await out.next();
      if (done) throw new Error('CLI exited before printing URLs');
      const match = /^(LAGLESS_\w+)=(.*)$/.exec(String(value));
      if (match?.[1] && match[2] !== undefined) env[match[1]] = match[2];
    }
    const replica = await connect(String(env.LAGLESS_REPLICA_URLS));
    const { rows } = await replica.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
    await replica.end();
    expect(rows).toEqual([{ recovery: true }]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    await expect(connect(String(env.LAGLESS_PRIMARY_URL), { connectionTimeoutMillis: 2000 })).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });

  it('prints usage and exits 2 without a command', async () => {
    const child = runTs('packages/testkit/src/cli.ts');
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/Usage: lagless-cluster up/);
  });
});
