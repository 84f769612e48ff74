// The client side of the example: starts the two app processes, writes through one and reads
// through the other, and reports which server ran each read. main.ts and example.test.ts run it.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TOKEN_HEADER } from '@lagless/core/http';
import { type AppMessage, type NoteRead, USER_HEADER } from './app-env.js';

export interface ExampleEnv {
  primary: { url: string; port: number };
  replicas: ReadonlyArray<{ name: string; url: string; port: number }>;
  redis: { url: string };
}

export interface ExampleHooks {
  /** Stops WAL replay on one replica, which then serves stale data; returns that replica's port. */
  pauseOneReplica: () => Promise<number>;
  log?: (line: string) => void;
}

/** One write through one app and the read of it through the other. */
export interface CrossRead {
  readonly via: 'user id (Redis)' | 'token header';
  readonly wroteThrough: AppName;
  readonly readThrough: AppName;
  readonly id: number;
  /** The read saw the note it wrote. */
  readonly sawWrite: boolean;
  /** Port of the PostgreSQL server that ran the read, as that server said. */
  readonly servedBy: number;
}

export interface ExampleResult {
  readonly reads: CrossRead[];
  /** Reads carrying neither a user id nor a token: [saw the write, served by]. */
  readonly unprotected: ReadonlyArray<{ sawWrite: boolean; servedBy: number }>;
  readonly pausedPort: number;
}

type AppName = 'prisma' | 'drizzle';

const APPS: Record<AppName, { file: string; label: string }> = {
  prisma: { file: 'app-prisma.ts', label: 'Fastify + Prisma' },
  drizzle: { file: 'app-drizzle.ts', label: 'Express + Drizzle' },
};
const HERE = fileURLToPath(new URL('.', import.meta.url));
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
const ROUNDS = 10;

/** Every app process started and not yet gone: main.ts kills them if it has to exit at once. */
export const running = new Set<ChildProcess>();

/** Starts an app process (TypeScript through tsx, packages from source) and waits for its URL. */
async function startApp(
  name: AppName,
  env: ExampleEnv,
  started: ChildProcess[],
): Promise<{ url: string; pid: number }> {
  const { file } = APPS[name];
  const child = fork(file, [], {
    cwd: HERE,
    // Not inherited: under a test runner, the parent's own flags are not the app's.
    execArgv: ['--conditions=lagless-source', '--import', 'tsx'],
    env: {
      ...process.env,
      LAGLESS_PRIMARY_URL: env.primary.url,
      LAGLESS_REPLICA_URLS: env.replicas.map((replica) => replica.url).join(','),
      REDIS_URL: env.redis.url,
      PORT: '0',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  started.push(child);
  running.add(child);
  child.once('exit', () => running.delete(child));
  const url = await new Promise<string>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (message: AppMessage) => {
      done();
      resolve(message.url);
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`${file} exited before listening (code ${code}, signal ${signal})`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${file} did not listen within ${START_TIMEOUT_MS / 1000} s`));
    }, START_TIMEOUT_MS);
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  return { url, pid: child.pid ?? -1 };
}

/** SIGTERM (the app closes its server, router and connections), then SIGKILL if it takes too long. */
async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

export async function runExample(env: ExampleEnv, hooks: ExampleHooks): Promise<ExampleResult> {
  const log = hooks.log ?? (() => {});
  const nodeName = (port: number) =>
    port === env.primary.port ? 'primary' : (env.replicas.find((replica) => replica.port === port)?.name ?? '?');
  const started: ChildProcess[] = [];
  try {
    const [prisma, drizzle] = await Promise.all([startApp('prisma', env, started), startApp('drizzle', env, started)]);
    const urls: Record<AppName, string> = { prisma: prisma.url, drizzle: drizzle.url };
    log(`${APPS.prisma.label} on ${prisma.url} (pid ${prisma.pid})`);
    log(`${APPS.drizzle.label} on ${drizzle.url} (pid ${drizzle.pid})`);

    const pausedPort = await hooks.pauseOneReplica();
    log(`paused WAL replay on ${nodeName(pausedPort)} (port ${pausedPort}): it serves stale data from now on`);

    async function write(app: AppName, headers: Record<string, string>): Promise<{ id: number; token: string }> {
      const response = await fetch(`${urls[app]}/notes`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ body: `a note written through the ${app} app` }),
      });
      if (!response.ok) throw new Error(`POST through the ${app} app: ${response.status} ${await response.text()}`);
      const { id } = (await response.json()) as { id: number };
      return { id, token: response.headers.get(TOKEN_HEADER) ?? '' };
    }
    async function read(app: AppName, id: number, headers: Record<string, string>): Promise<NoteRead> {
      const response = await fetch(`${urls[app]}/notes/${id}`, { headers });
      if (!response.ok) throw new Error(`GET through the ${app} app: ${response.status} ${await response.text()}`);
      return (await response.json()) as NoteRead;
    }

    const reads: CrossRead[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const [from, to]: [AppName, AppName] = round % 2 === 0 ? ['prisma', 'drizzle'] : ['drizzle', 'prisma'];
      // A signed-in user: the client sends only its user id; the position goes through Redis.
      const user = { [USER_HEADER]: `user-${round}` };
      const byKey = await write(from, user);
      const seenByKey = await read(to, byKey.id, user);
      reads.push({
        via: 'user id (Redis)',
        wroteThrough: from,
        readThrough: to,
        id: byKey.id,
        sawWrite: seenByKey.note?.id === byKey.id,
        servedBy: seenByKey.servedBy,
      });
      // An anonymous client: it carries the token the write's response gave it.
      const byToken = await write(from, {});
      const seenByToken = await read(to, byToken.id, { [TOKEN_HEADER]: byToken.token });
      reads.push({
        via: 'token header',
        wroteThrough: from,
        readThrough: to,
        id: byToken.id,
        sawWrite: seenByToken.note?.id === byToken.id,
        servedBy: seenByToken.servedBy,
      });
    }
    for (const r of reads.slice(0, 4)) {
      log(
        `note ${r.id} written through ${r.wroteThrough}, read through ${r.readThrough} by ${r.via}: ` +
          `${r.sawWrite ? 'saw it' : 'MISSED it'}, served by ${nodeName(r.servedBy)} (port ${r.servedBy})`,
      );
    }
    const byNode = new Map<string, number>();
    for (const r of reads) byNode.set(nodeName(r.servedBy), (byNode.get(nodeName(r.servedBy)) ?? 0) + 1);
    log(
      `${reads.filter((r) => r.sawWrite).length}/${reads.length} cross-instance reads saw their write; served by ` +
        [...byNode].map(([name, n]) => `${name} ×${n}`).join(', '),
    );

    // What the user id and the token protect against: the same write → read with neither.
    const unprotected: Array<{ sawWrite: boolean; servedBy: number }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const { id } = await write('prisma', {});
      const seen = await read('drizzle', id, {});
      unprotected.push({ sawWrite: seen.note?.id === id, servedBy: seen.servedBy });
    }
    const missed = unprotected.filter((r) => !r.sawWrite);
    log(
      `without user id or token: ${missed.length}/${ROUNDS} reads missed the note just written ` +
        `(served by ${[...new Set(missed.map((r) => nodeName(r.servedBy)))].join(', ') || 'no stale replica this time'})`,
    );
    return { reads, unprotected, pausedPort };
  } finally {
    await Promise.all(started.map(stopApp));
  }
}
