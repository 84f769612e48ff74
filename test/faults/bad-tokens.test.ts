// Whatever a client puts in the x-lagless-token header or the lagless_token cookie, the request is
// served (200) without waiting, the bad token is reported exactly once and ignored, and good tokens
// sent alongside still guarantee read-your-writes. Real servers (Node middleware and the web Request
// helper behind node:http), a real cluster with one replica paused so that a stale read would show.
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeToken, type Router, type TokenRejectionReason } from '@lagless/core';
import { readToken, TOKEN_COOKIE, TOKEN_HEADER, tokenMiddleware, withTokenScope } from '@lagless/core/http';
import { type Cluster, startCluster } from '@lagless/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Instance, instance, type Pool } from './load.js';

const SECRET = 'bad-tokens-secret-0123456789';
/** Far beyond any WAL position this cluster will reach during the test. */
const FAR_FUTURE_LSN = 0xffff_0000_0000n;
const CLIENTS = 8;
/** Samples per bad-token group, each paired with the same request carrying no token. */
const REPS = 4;
const MAX_ADDED_MS = 20;
// Node refuses requests whose headers exceed 16 KB with a 431 before any middleware runs: an app that
// wants a 100 KB token to reach lagless (and be ignored there) has to raise the server's limit.
const MAX_HEADER_BYTES = 256 * 1024;
const CLEARED_COOKIE = /^lagless_token=; Max-Age=0; Path=\/; HttpOnly; SameSite=Lax$/;

/** The token in a `set-cookie: lagless_token=...` line. */
function cookieToken(line: string): string {
  return /^lagless_token=([^;]*);/.exec(line)?.[1] ?? '';
}

type Transport = 'node' | 'web';
type Location = 'header' | 'cookie';
type Config = 'secret' | 'no-secret';
const TRANSPORTS: readonly Transport[] = ['node', 'web'];
const LOCATIONS: readonly Location[] = ['header', 'cookie'];
const CONFIGS: readonly Config[] = ['secret', 'no-secret'];

let cluster: Cluster;
const instances: Instance[] = [];
const servers: Server[] = [];
const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
/** Base URL of each server, by transport and router configuration. */
const apps = new Map<string, string>();
const routers = new Map<Config, Router<Pool>>();

/** A token this router minted itself (it decodes), and not the bad one the client sent. */
async function isFresh(config: Config, token: string, sent: string | undefined): Promise<boolean> {
  if (token === '' || token === sent) return false;
  const router = routers.get(config);
  if (router === undefined) return false;
  return router.decodeToken(token).then(
    () => true,
    () => false,
  );
}
/** Real tokens, signed by the router with a secret and unsigned by the one without. */
const valid = new Map<Config, string>();
let systemIdentifier: string;

/** What the server saw of one request: the token events raised while handling it, and how long it took. */
interface Handled {
  readonly events: TokenRejectionReason[];
  /** When the last token-rejected event of this request was emitted (performance.now()). */
  rejectedAt: number | undefined;
  /** The router's waits for a replica: how long, and when each ended. */
  readonly waits: Array<{ ms: number; endedAt: number }>;
  ms: number | undefined;
}
const handled = new Map<number, Handled>();
const current = new AsyncLocalStorage<Handled>();
/** token-rejected events raised outside any request: none are expected. */
const orphanEvents: TokenRejectionReason[] = [];
const eventsByConfig = new Map<Config, number>();
let nextRequestId = 1;

// ------------------------------------------------------------------ the app

interface Body {
  id?: number;
  port?: number;
  n?: number;
  found?: boolean;
  /** The token the server received, as the HTTP helpers read it (what actually arrived). */
  seen: string | null;
}

async function app(router: Router<Pool>, method: string, url: string, seen: string | undefined): Promise<Body> {
  // Only its length and head come back: a 100 KB token need not travel twice.
  const shownSeen = seen === undefined ? null : seen.length > 200 ? `${seen.slice(0, 40)}…(${seen.length})` : seen;
  if (method === 'POST') {
    const id = await router.write(async (pool) => {
      const { rows } = await pool.query<{ id: number }>('INSERT INTO t DEFAULT VALUES RETURNING id');
      return rows[0]?.id;
    });
    return { ...(id === undefined ? {} : { id }), seen: shownSeen };
  }
  const id = Number(new URL(url, 'http://app').searchParams.get('id') ?? 0);
  const row = await router.read(async (pool) => {
    const { rows } = await pool.query<{ port: number; n: number; found: boolean }>(
      'SELECT inet_server_port() AS port, (SELECT count(*) FROM t)::int AS n, EXISTS (SELECT 1 FROM t WHERE id = $1) AS found',
      [id],
    );
    return rows[0];
  });
  return { port: row?.port, n: row?.n, found: row?.found, seen: shownSeen } as Body;
}

function fail(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = 500;
  res.end(String((error as Error)?.stack ?? error));
}

/** A node:http server that records, per request id, the events and the time spent handling it. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    const record: Handled = { events: [], rejectedAt: undefined, waits: [], ms: undefined };
    handled.set(Number(req.headers['x-request-id']), record);
    const started = performance.now();
    res.once('finish', () => {
      record.ms = performance.now() - started;
    });
    current.run(record, () => handler(req, res));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Express/Connect style: the middleware, then the route. */
function nodeApp(router: Router<Pool>): Promise<string> {
  const middleware = tokenMiddleware(router);
  return serve((req, res) =>
    middleware(req, res, (error) => {
      if (error) return fail(res, error);
      app(
        router,
        req.method ?? 'GET',
        req.url ?? '/',
        readToken((name) => req.headers[name]),
      ).then(
        (body) => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(body));
        },
        (e: unknown) => fail(res, e),
      );
    }),
  );
}

/** Hono / Next.js style: a web Request in, a web Response out, bridged over node:http as such adapters do. */
function webApp(router: Router<Pool>): Promise<string> {
  return serve(async (req, res) => {
    try {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        for (const one of [value ?? []].flat()) headers.append(name, one);
      }
      const request = new Request(new URL(req.url ?? '/', 'http://127.0.0.1'), {
        method: req.method ?? 'GET',
        headers,
      });
      const response = await withTokenScope(router, request, async (r) =>
        Response.json(
          await app(
            router,
            r.method,
            r.url,
            readToken((name) => r.headers.get(name)),
          ),
        ),
      );
      res.statusCode = response.status;
      response.headers.forEach((value, name) => {
        if (name !== 'set-cookie') res.setHeader(name, value);
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) res.setHeader('set-cookie', cookies);
      res.end(await response.text());
    } catch (error) {
      fail(res, error);
    }
  });
}

// ------------------------------------------------------------------ the client

interface Reply {
  readonly id: number;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  body(): Body;
}

/** A raw node:http request: it sends latin1 bytes and 100 KB headers as given, as fetch() may not. */
function send(
  base: string,
  path: string,
  method: 'GET' | 'POST',
  headers: Record<string, string> = {},
): Promise<Reply> {
  const id = nextRequestId++;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, agent, headers: { ...headers, 'x-request-id': String(id) } });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ id, status: res.statusCode ?? 0, headers: res.headers, text, body: () => JSON.parse(text) as Body });
      });
    });
    req.end();
  });
}

function carry(location: Location, token: string, neighbours = false): Record<string, string> {
  if (location === 'header') return { [TOKEN_HEADER]: token };
  // Other cookies around ours, as a browser sends them.
  return { cookie: neighbours ? `theme=dark; ${TOKEN_COOKIE}=${token}; evil=1` : `${TOKEN_COOKIE}=${token}` };
}

function setCookies(reply: Reply): string[] {
  return reply.headers['set-cookie'] ?? [];
}

// ------------------------------------------------------------------ the bad tokens

interface Kind {
  readonly name: string;
  readonly configs: readonly Config[];
  readonly reason: TokenRejectionReason;
  value(config: Config): string;
  /** What the server must receive, when it differs from what was sent. */
  seen?(value: string, location: Location): string;
}

function lsnOf(token: string): bigint {
  return BigInt(`0x${token.split('.')[1]}`);
}

function validToken(config: Config): string {
  const token = valid.get(config);
  if (token === undefined) throw new Error(`no valid ${config} token yet`);
  return token;
}

function secretOf(config: Config): string | undefined {
  return config === 'secret' ? SECRET : undefined;
}

// The `;` cuts a valid token short: in a header it is garbage, in a cookie it ends the value there.
const INJECT_AT = 20;
// What a UTF-8 client sends for '✓', as the latin1 string node:http writes byte for byte.
const UTF8_CHECK_MARK = Buffer.from('✓', 'utf8').toString('latin1');

const KINDS: readonly Kind[] = [
  {
    name: 'forged',
    configs: ['secret'],
    reason: 'bad-signature',
    value: () => {
      const token = validToken('secret');
      const at = token.lastIndexOf('.') + 1;
      return `${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`;
    },
  },
  { name: 'unsigned', configs: ['secret'], reason: 'unsigned', value: () => validToken('no-secret') },
  {
    name: 'signed without secret',
    configs: ['no-secret'],
    reason: 'signed-without-secret',
    value: () => validToken('secret'),
  },
  { name: 'malformed', configs: CONFIGS, reason: 'malformed', value: () => 'l1.not-a-token' },
  {
    name: 'unknown version',
    configs: CONFIGS,
    reason: 'unsupported-version',
    value: (config) => `l2${validToken(config).slice(2)}`,
  },
  {
    name: 'foreign cluster',
    configs: CONFIGS,
    reason: 'foreign-cluster',
    value: (config) => encodeToken({ lsn: lsnOf(validToken(config)), systemIdentifier: '42' }, secretOf(config)),
  },
  {
    name: 'far-future signed',
    configs: ['secret'],
    reason: 'ahead-of-primary',
    value: () => encodeToken({ lsn: FAR_FUTURE_LSN, systemIdentifier }, SECRET),
  },
  {
    name: 'far-future unsigned',
    configs: ['no-secret'],
    reason: 'ahead-of-primary',
    value: () => encodeToken({ lsn: FAR_FUTURE_LSN, systemIdentifier }),
  },
  { name: '100 KB', configs: CONFIGS, reason: 'malformed', value: () => `l1.${'A'.repeat(100_000)}` },
  {
    name: 'injected ;',
    configs: CONFIGS,
    reason: 'malformed',
    value: (config) => {
      const token = validToken(config);
      return `${token.slice(0, INJECT_AT)};evil=1;${token.slice(INJECT_AT)}`;
    },
    seen: (value, location) => (location === 'cookie' ? value.slice(0, INJECT_AT) : value),
  },
  {
    name: 'non-ASCII',
    configs: CONFIGS,
    reason: 'malformed',
    value: (config) => {
      const token = validToken(config);
      return `${token.slice(0, 10)}é${token.slice(10)}${UTF8_CHECK_MARK}`;
    },
  },
];

// ------------------------------------------------------------------ bookkeeping

interface Check {
  readonly label: string;
  readonly reply: Reply;
  readonly expectEvents: readonly TokenRejectionReason[];
}

/** Runs `items` on CLIENTS concurrent clients, dealt round-robin after a deterministic shuffle. */
async function onClients<T>(items: readonly T[], run: (item: T) => Promise<void>): Promise<void> {
  const shuffled = [...items];
  let seed = 0x2545f491;
  for (let i = shuffled.length - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0;
    const j = seed % (i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j] as T, shuffled[i] as T];
  }
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = client; i < shuffled.length; i += CLIENTS) await run(shuffled[i] as T);
    }),
  );
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function handledOf(reply: Reply): Handled {
  const record = handled.get(reply.id);
  if (!record) throw new Error(`request ${reply.id} never reached a server`);
  return record;
}

/** Problems with the events of each checked request; empty when each saw exactly what it expected. */
function eventProblems(checks: readonly Check[]): string[] {
  const problems: string[] = [];
  for (const { label, reply, expectEvents } of checks) {
    const seen = handledOf(reply).events;
    if (seen.length !== expectEvents.length || seen.some((reason, i) => reason !== expectEvents[i])) {
      problems.push(`${label}: events [${seen.join(', ')}], expected [${expectEvents.join(', ')}]`);
    }
  }
  return problems;
}

function fmt(ms: number): string {
  return ms.toFixed(2);
}

// ------------------------------------------------------------------ setup

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query('CREATE TABLE t (id serial PRIMARY KEY)');
  await cluster.waitForReplicas();
  systemIdentifier = cluster.systemIdentifier;
  for (const config of CONFIGS) {
    // Round-robin, so reads that may go anywhere do reach the paused replica.
    const one = instance(cluster, {
      balancer: 'round-robin',
      ...(config === 'secret' ? { tokenSecret: SECRET } : {}),
    });
    instances.push(one);
    const router = one.router;
    routers.set(config, router);
    eventsByConfig.set(config, 0);
    router.on('token-rejected', ({ reason }) => {
      eventsByConfig.set(config, (eventsByConfig.get(config) ?? 0) + 1);
      const record = current.getStore();
      if (record) {
        record.events.push(reason);
        record.rejectedAt = performance.now();
      } else orphanEvents.push(reason);
    });
    router.on('wait', ({ waitedMs }) => current.getStore()?.waits.push({ ms: waitedMs, endedAt: performance.now() }));
    await router.ready();
    const token = await router.session(async () => {
      await router.write((pool) => pool.query('INSERT INTO t DEFAULT VALUES'));
      return router.token();
    });
    if (token === undefined) throw new Error(`the ${config} router issued no token after a write`);
    valid.set(config, token);
    apps.set(`node/${config}`, await nodeApp(router));
    apps.set(`web/${config}`, await webApp(router));
  }
  // The tokens the bad ones are built from are what they claim to be.
  expect(validToken('secret').split('.')).toHaveLength(4);
  expect(validToken('no-secret').split('.')).toHaveLength(3);
  expect(validToken('secret').split('.')[2]).toBe(systemIdentifier);
}, 60_000);

afterAll(async () => {
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    ),
  );
  agent.destroy();
  for (const one of instances) await one.close();
  await cluster?.stop();
});

function appOf(transport: Transport, config: Config): string {
  const base = apps.get(`${transport}/${config}`);
  if (base === undefined) throw new Error(`no ${transport} app for ${config}`);
  return base;
}

function routerOf(config: Config): Router<Pool> {
  const router = routers.get(config);
  if (router === undefined) throw new Error(`no ${config} router`);
  return router;
}

interface BadCase {
  readonly transport: Transport;
  readonly location: Location;
  readonly config: Config;
  readonly kind: Kind;
}

function badCases(): BadCase[] {
  const cases: BadCase[] = [];
  for (const transport of TRANSPORTS) {
    for (const location of LOCATIONS) {
      for (const kind of KINDS) {
        for (const config of kind.configs) cases.push({ transport, location, config, kind });
      }
    }
  }
  return cases;
}

function caseLabel({ transport, location, config, kind }: BadCase): string {
  return `${transport}/${location}/${config}/${kind.name}`;
}

interface BadResult extends BadCase {
  readonly bad: Reply;
  readonly plain: Reply;
}

/** Server-side time the bad token added: its request's handling time minus its no-token twin's. */
function addedMs({ bad, plain }: BadResult): number {
  return (handledOf(bad).ms ?? Number.NaN) - (handledOf(plain).ms ?? Number.NaN);
}

describe('bad tokens under concurrent load, with one replica paused', () => {
  it('every kind, in header and cookie, through Node middleware and web Request: 200, no added wait, 0 stale, one event each', async () => {
    const paused = cluster.replicas[0];
    if (!paused) throw new Error('the cluster has no replicas');
    const rejectedBefore = new Map(CONFIGS.map((c) => [c, routerOf(c).stats().tokens.rejected]));
    const eventsBefore = new Map(eventsByConfig);

    interface GoodResult {
      readonly transport: Transport;
      readonly location: Location;
      readonly config: Config;
      readonly write: Reply;
      readonly read: Reply | undefined;
      readonly id: number | undefined;
    }
    const bads: BadResult[] = [];
    const goods: GoodResult[] = [];
    type Item = { bad: BadCase; rep: number } | { good: { transport: Transport; location: Location; config: Config } };
    const items: Item[] = [];
    for (const bad of badCases()) for (let rep = 0; rep < REPS; rep++) items.push({ bad, rep });
    // Good sessions among them: a write, then a read carrying its token, which must see the row.
    for (const transport of TRANSPORTS) {
      for (const location of LOCATIONS) {
        for (const config of CONFIGS) for (let i = 0; i < 5; i++) items.push({ good: { transport, location, config } });
      }
    }

    // The primary's round trip under this very load, through the pool the router's WAL probes use: the
    // unit in which a far-future token's verification is counted.
    const primaryRtts: number[] = [];
    let loading = true;
    const primaryNode = instances[0]?.nodes[0];
    const sampleRtts = async () => {
      while (loading && primaryNode) {
        const sent = performance.now();
        await primaryNode.query('SELECT pg_current_wal_insert_lsn()');
        primaryRtts.push(performance.now() - sent);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    };
    let sampler: Promise<void> = Promise.resolve();
    await paused.pauseReplay();
    const started = performance.now();
    try {
      sampler = sampleRtts();
      await onClients(items, async (item) => {
        if ('bad' in item) {
          const { transport, location, config, kind } = item.bad;
          const base = appOf(transport, config);
          const badRequest = () => send(base, '/', 'GET', carry(location, kind.value(config)));
          const plainRequest = () => send(base, '/', 'GET');
          // Back to back, so both meet the same load; alternating which goes first, so neither always
          // meets the warmer connection.
          let bad: Reply;
          let plain: Reply;
          if (item.rep % 2 === 0) {
            bad = await badRequest();
            plain = await plainRequest();
          } else {
            plain = await plainRequest();
            bad = await badRequest();
          }
          bads.push({ ...item.bad, bad, plain });
          return;
        }
        const { transport, location, config } = item.good;
        const base = appOf(transport, config);
        const write = await send(base, '/', 'POST');
        const token = write.headers[TOKEN_HEADER];
        const id = write.status === 200 ? write.body().id : undefined;
        const read =
          typeof token === 'string' && id !== undefined
            ? await send(base, `/?id=${id}`, 'GET', carry(location, token, true))
            : undefined;
        goods.push({ transport, location, config, write, read, id });
      });
    } finally {
      loading = false;
      await paused.resumeReplay();
      await sampler.catch((error: unknown) => console.log(`primary round trip sampler: ${error}`));
    }
    const wallMs = performance.now() - started;
    // Every event of a request is due before it answers; this only gives a late one the chance to be
    // counted (and reported as a problem) rather than missed.
    await new Promise((resolve) => setTimeout(resolve, 50));

    const problems: string[] = [];
    const checks: Check[] = [];
    for (const result of bads) {
      const label = caseLabel(result);
      const { bad, plain, kind, location, config } = result;
      checks.push({ label, reply: bad, expectEvents: [kind.reason] });
      checks.push({ label: `${label} (no token)`, reply: plain, expectEvents: [] });
      for (const [what, reply] of [
        ['bad', bad],
        ['no token', plain],
      ] as const) {
        if (reply.status !== 200)
          problems.push(`${label} (${what}): HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
      }
      if (bad.status !== 200) continue;
      const sent = kind.value(config);
      const expectedSeen = kind.seen?.(sent, location) ?? sent;
      const shown = expectedSeen.length > 200 ? `${expectedSeen.slice(0, 40)}…(${expectedSeen.length})` : expectedSeen;
      if (bad.body().seen !== shown) problems.push(`${label}: the server received ${JSON.stringify(bad.body().seen)}`);
      // An ignored token never comes back: the response carries a fresh token of this router (one
      // bounding what the request read), or clears the cookie that carried the bad one.
      const answered = bad.headers[TOKEN_HEADER];
      if (answered !== undefined && !(await isFresh(config, String(answered), sent))) {
        const { ms, waits } = handledOf(bad);
        problems.push(
          `${label}: answered with token ${String(answered).slice(0, 24)}… after ${fmt(ms ?? Number.NaN)} ms ` +
            `(router waits: ${waits.map((w) => fmt(w.ms)).join(', ') || 'none'} ms)`,
        );
      }
      const cookies = setCookies(bad);
      if (location === 'cookie') {
        const [cookie] = cookies;
        const replaced =
          cookies.length === 1 &&
          (CLEARED_COOKIE.test(cookie ?? '') || (await isFresh(config, cookieToken(cookie ?? ''), sent)));
        if (!replaced) problems.push(`${label}: set-cookie ${JSON.stringify(cookies)}, expected the cookie replaced`);
      }
      for (const cookie of setCookies(plain)) {
        if (!(await isFresh(config, cookieToken(cookie), undefined))) {
          problems.push(`${label} (no token): set-cookie ${JSON.stringify(cookie)}, not a token of this router`);
        }
      }
    }
    const isStale = (good: GoodResult) => good.read?.status === 200 && good.read.body().found !== true;
    for (const good of goods) {
      const label = `${good.transport}/${good.location}/${good.config}/good`;
      if (good.write.status !== 200 || !good.read) {
        problems.push(
          `${label}: the write answered ${good.write.status} without a token: ${good.write.text.slice(0, 300)}`,
        );
        continue;
      }
      checks.push({ label: `${label} write`, reply: good.write, expectEvents: [] });
      checks.push({ label: `${label} read`, reply: good.read, expectEvents: [] });
      if (good.read.status !== 200) {
        problems.push(`${label}: read HTTP ${good.read.status}: ${good.read.text.slice(0, 300)}`);
      } else if (isStale(good)) {
        problems.push(`${label}: stale read of row ${good.id} on port ${good.read.body().port}`);
      }
    }
    problems.push(...eventProblems(checks));
    if (orphanEvents.length > 0) problems.push(`token-rejected outside any request: ${orphanEvents.join(', ')}`);
    for (const config of CONFIGS) {
      const events = (eventsByConfig.get(config) ?? 0) - (eventsBefore.get(config) ?? 0);
      const rejected = routerOf(config).stats().tokens.rejected - (rejectedBefore.get(config) ?? 0);
      const expected = bads.filter((b) => b.config === config).length;
      if (events !== expected || rejected !== expected) {
        problems.push(`${config} router: ${events} events, stats().tokens.rejected +${rejected}, expected ${expected}`);
      }
    }

    // Added wait, as medians of paired differences: per kind (pooled over transports and locations,
    // where the token is handled the same way) and per transport × location (pooled over kinds).
    const slow: string[] = [];
    const summary: string[] = [];
    for (const transport of TRANSPORTS) {
      for (const location of LOCATIONS) {
        const here = bads.filter((b) => b.transport === transport && b.location === location);
        const goodHere = goods.filter((g) => g.transport === transport && g.location === location);
        const replies = [...here.flatMap((b) => [b.bad, b.plain]), ...goodHere.flatMap((g) => [g.write, g.read])];
        const ok = replies.filter((reply) => reply?.status === 200).length;
        const events = here.reduce((sum, b) => sum + handledOf(b.bad).events.length, 0);
        const added = median(here.map(addedMs));
        summary.push(
          `${`${transport}/${location}`.padEnd(12)} requests ${replies.length}, 200s ${ok}, bad ${here.length}, ` +
            `events ${events}, good reads ${goodHere.length}, stale ${goodHere.filter(isStale).length}, ` +
            `median added ${fmt(added)} ms (bad ${fmt(median(here.map((b) => handledOf(b.bad).ms ?? Number.NaN)))} ms, ` +
            `no token ${fmt(median(here.map((b) => handledOf(b.plain).ms ?? Number.NaN)))} ms)`,
        );
        if (!(added < MAX_ADDED_MS)) slow.push(`${transport}/${location}: median added ${fmt(added)} ms`);
      }
    }
    const perKind: string[] = [];
    for (const kind of KINDS) {
      for (const config of kind.configs) {
        const group = bads.filter((b) => b.kind === kind && b.config === config);
        const added = median(group.map(addedMs));
        const most = Math.max(...group.map(addedMs));
        let line = `${`${config}/${kind.name}`.padEnd(34)} median added ${fmt(added).padStart(6)} ms (max ${fmt(most).padStart(6)}) over ${group.length}`;
        if (kind.reason === 'ahead-of-primary') {
          // How the wait splits: until the primary's answer rejected the claim, and after it, until the
          // read loop noticed.
          const waits = group.map((b) => handledOf(b.bad));
          const waited = median(waits.map((h) => h.waits.reduce((sum, w) => sum + w.ms, 0)));
          const late = median(
            waits.map((h) => {
              const last = h.waits.at(-1);
              return last && h.rejectedAt !== undefined ? Math.max(0, last.endedAt - h.rejectedAt) : Number.NaN;
            }),
          );
          line += `; router wait ${fmt(waited)} ms, of which ${fmt(late)} ms after the primary rejected the claim`;
        }
        perKind.push(line);
        // A token claiming a position the primary never reached costs asking the primary: a probe
        // queued behind one under way, then the request's own replay probe behind the wait's. Where a
        // round trip is slow (a loaded CI machine), that is allowed three round trips, never more.
        const bound =
          kind.reason === 'ahead-of-primary' ? Math.max(MAX_ADDED_MS, 3 * median(primaryRtts)) : MAX_ADDED_MS;
        if (!(added < bound)) {
          slow.push(
            `${config}/${kind.name}: median added ${fmt(added)} ms (a primary round trip took ${fmt(median(primaryRtts))} ms)`,
          );
        }
      }
    }
    console.log(
      `bad tokens: ${bads.length} bad-token requests (each with a no-token twin), ${goods.length} good sessions, ` +
        `${CLIENTS} clients, ${fmt(wallMs)} ms wall, primary round trip median ${fmt(median(primaryRtts))} ms\n` +
        `${summary.join('\n')}\n${perKind.join('\n')}`,
    );

    // Soft, so that one run reports every requirement that failed, not only the first.
    expect.soft(problems, problems.slice(0, 40).join('\n')).toEqual([]);
    expect.soft(goods.filter(isStale)).toHaveLength(0);
    expect.soft(slow, slow.join('\n')).toEqual([]);
  });

  it('a request that writes while carrying a bad token gets a fresh token for its write, which the next read honours', async () => {
    const paused = cluster.replicas[0];
    if (!paused) throw new Error('the cluster has no replicas');
    const problems: string[] = [];
    const checks: Check[] = [];
    let stale = 0;
    await paused.pauseReplay();
    try {
      await onClients(badCases(), async (bad) => {
        const { transport, location, config, kind } = bad;
        const label = caseLabel(bad);
        const base = appOf(transport, config);
        const write = await send(base, '/', 'POST', carry(location, kind.value(config)));
        if (write.status !== 200) {
          problems.push(`${label}: write HTTP ${write.status}: ${write.text.slice(0, 300)}`);
          return;
        }
        checks.push({ label: `${label} write`, reply: write, expectEvents: [kind.reason] });
        const token = write.headers[TOKEN_HEADER];
        if (typeof token !== 'string') {
          problems.push(`${label}: the write's response carries no token`);
          return;
        }
        const cookies = setCookies(write);
        if (!(cookies.length === 1 && cookies[0]?.startsWith(`${TOKEN_COOKIE}=${token}; `))) {
          problems.push(`${label}: set-cookie ${JSON.stringify(cookies)}, expected the fresh token`);
        }
        // The fresh token stands for the write, never for what the bad token claimed.
        try {
          await routerOf(config).decodeToken(token);
        } catch (error) {
          problems.push(`${label}: its own router refuses the fresh token: ${(error as Error).message}`);
        }
        const { id } = write.body();
        const read = await send(base, `/?id=${id}`, 'GET', carry(location, token));
        checks.push({ label: `${label} read`, reply: read, expectEvents: [] });
        if (read.status !== 200) {
          problems.push(`${label}: read HTTP ${read.status}: ${read.text.slice(0, 300)}`);
          return;
        }
        const body = read.body();
        if (body.found !== true) {
          stale++;
          problems.push(`${label}: stale read of its own row ${id} on port ${body.port}`);
        }
      });
    } finally {
      await paused.resumeReplay();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    problems.push(...eventProblems(checks));
    console.log(
      `bad tokens on writes: ${badCases().length} writes carrying a bad token, each followed by a read; ${stale} stale, ${problems.length} problems`,
    );
    expect(problems, problems.slice(0, 40).join('\n')).toEqual([]);
    expect(stale).toBe(0);
  });
});
