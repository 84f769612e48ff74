// Read-your-writes across app instances, through real HTTP servers: a client writes through
// instance A, then at once reads through instance B carrying the token A's response gave it (the
// header on even pairs, the cookie on odd ones). replica1's replay is paused, so a read it serves
// after the write cannot see the row; the server that ran each read says who it was. Per framework:
// Fastify (tokenPlugin; A on Prisma, B on Drizzle), Express 5 (tokenMiddleware; A on Drizzle, B on
// Prisma), Hono on @hono/node-server (withTokenScope; core over pg on both sides).
import { TOKEN_COOKIE, TOKEN_HEADER } from '@lagless/core/http';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactly } from '../consistency/checks.js';
import { describeReport, type LoadReport, type Observation, runReaders } from '../faults/load.js';
import {
  APP_SCHEMA_SQL,
  coreOrm,
  drizzleOrm,
  expressApp,
  type Framework,
  fastify,
  hono,
  type Orm,
  prismaOrm,
  type Seen,
  type Served,
} from './apps.js';

const PAIRS = 500;
const CONTROL_PAIRS = 40;
const OLD_TOKEN_READS = 60;
const CLIENTS = 16;

let cluster: Cluster;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  for (const statement of APP_SCHEMA_SQL) await cluster.primary.query(statement);
  await cluster.waitForReplicas();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await cluster?.stop();
});

async function start(framework: Framework, orm: Orm): Promise<Served> {
  cleanups.push(() => orm.close());
  await orm.ready();
  const served = await framework(orm);
  cleanups.push(() => served.close());
  return served;
}

type Carrier = 'header' | 'cookie' | 'none';

/** POST a note through `a`: its id and the token the response carried, in the header or the cookie. */
async function post(a: Served, owner: string, carrier: Carrier): Promise<{ id: number; token: string | undefined }> {
  const response = await fetch(`${a.url}/notes`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ owner, body: `written by ${owner}` }),
  });
  if (!response.ok) throw new Error(`POST answered ${response.status}: ${await response.text()}`);
  const { id } = (await response.json()) as { id: number };
  const header = response.headers.get(TOKEN_HEADER) ?? undefined;
  const cookie = response.headers
    .getSetCookie()
    .map((line) => line.split(';', 1)[0] ?? '')
    .find((pair) => pair.startsWith(`${TOKEN_COOKIE}=`))
    ?.slice(TOKEN_COOKIE.length + 1);
  if (carrier === 'none') return { id, token: undefined };
  // The header and the cookie carry the same token; each run takes one of them.
  if (header === undefined || cookie !== header) throw new Error(`token header ${header}, cookie ${cookie}`);
  return { id, token: carrier === 'header' ? header : cookie };
}

/** GET the note through `b`, carrying `token` as `carrier` says. */
async function get(b: Served, id: number, token: string | undefined, carrier: Carrier): Promise<Observation> {
  const headers: Record<string, string> = {};
  if (token !== undefined && carrier === 'header') headers[TOKEN_HEADER] = token;
  if (token !== undefined && carrier === 'cookie') headers.cookie = `theme=dark; ${TOKEN_COOKIE}=${token}`;
  const response = await fetch(`${b.url}/notes/${id}`, { headers });
  if (!response.ok) throw new Error(`GET answered ${response.status}: ${await response.text()}`);
  const seen = (await response.json()) as Seen;
  return { port: seen.port, stale: !seen.found };
}

function run(total: number, pair: (client: number, iteration: number) => Promise<Observation>): Promise<LoadReport> {
  const { read, stop } = exactly(total, pair);
  return runReaders(CLIENTS, read, stop);
}

function servedBy(report: LoadReport, port: number | undefined): number {
  return port === undefined ? 0 : (report.byPort.get(port) ?? 0);
}

const frameworks: Array<{ name: string; framework: Framework; a: () => Orm; b: () => Orm }> = [
  { name: 'Fastify: Prisma → Drizzle', framework: fastify, a: () => prismaOrm(cluster), b: () => drizzleOrm(cluster) },
  {
    name: 'Express: Drizzle → Prisma',
    framework: expressApp,
    a: () => drizzleOrm(cluster),
    b: () => prismaOrm(cluster),
  },
  { name: 'Hono (web Request): core → core', framework: hono, a: () => coreOrm(cluster), b: () => coreOrm(cluster) },
];

describe('cross-instance read-your-writes through real servers, replica1 paused', () => {
  it.each(frameworks)('$name: 500/500', async ({ framework, a: makeA, b: makeB }) => {
    const [a, b] = await Promise.all([start(framework, makeA()), start(framework, makeB())]);
    const [paused, live] = cluster.replicas;
    if (!paused || !live) throw new Error('two replicas expected');

    // A row and its token from before the pause: every replica has it.
    const old = await post(a, 'before the pause', 'header');
    await cluster.waitForReplicas();
    await paused.pauseReplay();
    try {
      const pairs = await run(PAIRS, async (client, iteration) => {
        const carrier = iteration % 2 === 0 ? 'header' : 'cookie';
        const { id, token } = await post(a, `client ${client}.${iteration}`, carrier);
        return get(b, id, token, carrier);
      });
      expect(pairs.reads, describeReport(pairs)).toBe(PAIRS);
      expect(pairs.failed, describeReport(pairs)).toBe(0);
      expect(pairs.stale, describeReport(pairs)).toBe(0);
      // Not by sending everything to the primary: the live replica served most reads after their
      // writes (waiting a few milliseconds for its replay); the primary only when it fell behind.
      expect(servedBy(pairs, live.port), describeReport(pairs)).toBeGreaterThanOrEqual(PAIRS / 2);
      expect(servedBy(pairs, paused.port), describeReport(pairs)).toBe(0);

      // An old token asks for nothing the paused replica lacks: it serves such reads too.
      const oldReads = await run(OLD_TOKEN_READS, (_client, iteration) =>
        get(b, old.id, old.token, iteration % 2 === 0 ? 'header' : 'cookie'),
      );
      expect(oldReads.stale + oldReads.failed, describeReport(oldReads)).toBe(0);
      expect(servedBy(oldReads, paused.port), describeReport(oldReads)).toBeGreaterThan(0);

      // The control: the same pairs without the token read the paused replica, which misses the row.
      const control = await run(CONTROL_PAIRS, async (client, iteration) => {
        const { id } = await post(a, `control ${client}.${iteration}`, 'none');
        return get(b, id, undefined, 'none');
      });
      expect(control.failed, describeReport(control)).toBe(0);
      expect(servedBy(control, paused.port), describeReport(control)).toBeGreaterThan(0);
      // Every one it served was stale (the live replica may miss a few too, not having replayed yet).
      expect(control.stale, describeReport(control)).toBeGreaterThanOrEqual(servedBy(control, paused.port));
    } finally {
      await paused.resumeReplay();
    }
  });
});
