// Tokens carried across HTTP requests between two app instances, through real servers and fetch().
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Cluster, startCluster } from '@lagless/testkit';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readToken, TOKEN_HEADER, type TokenScope, tokenMiddleware, withTokenScope } from '../src/http.js';
import { createRouter, MemoryTokenStore, type Router, type RouterOptions } from '../src/index.js';
import { expectInvalidOption, rejection } from './assertions.js';
import { clusterNodes, endNodes, type PoolNode } from './cluster-nodes.js';

let cluster: Cluster;
const routers: Router<pg.Pool>[] = [];
const nodes: PoolNode[] = [];
const servers: Server[] = [];

function instance(options: Partial<RouterOptions<pg.Pool>> = {}): Router<pg.Pool> {
  const { primary, replicas } = clusterNodes(cluster);
  nodes.push(primary, ...replicas);
  const router = createRouter<pg.Pool>({
    primary,
    replicas,
    tokenSecret: 'http-test-secret-0123456789',
    logger: false,
    ...options,
  });
  routers.push(router);
  return router;
}

/** A tiny app on Node's http server: POST inserts a row and returns its id, GET /:id reads it back. */
async function nodeApp(router: Router<pg.Pool>): Promise<string> {
  const middleware = tokenMiddleware(router);
  const server = createServer((req, res) => {
    middleware(req, res, async (error) => {
      if (error) {
        res.statusCode = 400;
        res.end(String((error as Error).message));
        return;
      }
      if (req.method === 'POST') {
        const id = await router.write(async (pool) => {
          const { rows } = await pool.query<{ id: number }>("INSERT INTO posts (body) VALUES ('hi') RETURNING id");
          return rows[0]?.id;
        });
        res.end(JSON.stringify({ id }));
        return;
      }
      const id = Number(req.url?.slice(1));
      const row = await router.read(async (pool) => {
        const { rows } = await pool.query('SELECT id, inet_server_port() AS port FROM posts WHERE id = $1', [id]);
        return rows[0] ?? null;
      });
      res.end(JSON.stringify(row));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query('CREATE TABLE posts (id serial PRIMARY KEY, body text)');
  await cluster.waitForReplicas();
});

afterAll(async () => {
  for (const server of servers) server.close();
  for (const router of routers) await router.close();
  await endNodes(...nodes);
  await cluster?.stop();
});

describe('readToken', () => {
  it('prefers the header, falls back to the cookie, and treats empty as none', () => {
    const headers = (h: Record<string, string>) => (name: string) => h[name];
    expect(readToken(headers({ [TOKEN_HEADER]: 'l1.a', cookie: 'lagless_token=l1.b' }))).toBe('l1.a');
    expect(readToken(headers({ cookie: 'a=1; lagless_token=l1.b; c=3' }))).toBe('l1.b');
    expect(readToken(headers({ cookie: 'lagless_token=l1.b' }), false)).toBeUndefined();
    expect(readToken(headers({ [TOKEN_HEADER]: ' ', cookie: 'lagless_token=' }))).toBeUndefined();
  });
});

describe('options', () => {
  it('are checked when the middleware is made, and on each call of the web helper', async () => {
    const router = instance();
    expectInvalidOption(
      () => tokenMiddleware({ session: () => {} } as unknown as TokenScope),
      'tokenMiddleware(scope)',
    );
    expectInvalidOption(() => tokenMiddleware(router, null as never), 'tokenMiddleware(options)');
    expectInvalidOption(() => tokenMiddleware(router, { cookie: 1 as never }), 'tokenMiddleware(options).cookie');
    expectInvalidOption(
      () => tokenMiddleware(router, { cookieAttributes: 'Path=/\n' }),
      'tokenMiddleware(options).cookieAttributes',
    );
    const error = await rejection(
      withTokenScope(router, new Request('http://app/'), () => new Response(), { key: 'user-1' as never }),
    );
    expect(String(error)).toContain('withTokenScope(options).key');
  });
});

describe('across requests and instances', () => {
  it('Node middleware: a read on another instance, carrying the token, sees the write', async () => {
    const [a, b] = [await nodeApp(instance()), await nodeApp(instance())];
    await cluster.replicas[0]?.pauseReplay();
    try {
      for (let i = 0; i < 20; i++) {
        const posted = await fetch(a, { method: 'POST' });
        const token = posted.headers.get(TOKEN_HEADER);
        expect(token).toMatch(/^l1\./);
        expect(posted.headers.get('set-cookie')).toContain(`lagless_token=${token}`);
        const { id } = (await posted.json()) as { id: number };
        const read = await fetch(`${b}/${id}`, { headers: { [TOKEN_HEADER]: token ?? '' } });
        const row = (await read.json()) as { id: number; port: number } | null;
        expect(row?.id).toBe(id);
        expect(row?.port).not.toBe(cluster.replicas[0]?.port);
      }
      // A token that cannot be trusted is ignored, and the cookie that carried it replaced: by a
      // token bounding what this request read.
      const forged = await fetch(`${b}/1`, { headers: { cookie: 'lagless_token=l1.0000000000000001.1.xyz' } });
      expect(forged.status).toBe(200);
      expect(forged.headers.get('set-cookie')).toMatch(/^lagless_token=l1\.[0-9A-F]{16}\.[0-9]+\.[A-Za-z0-9_-]+; /);
    } finally {
      await cluster.replicas[0]?.resumeReplay();
    }
  });

  it('web Request/Response: the response carries the token of the writes made while handling it', async () => {
    const router = instance();
    const response = await withTokenScope(router, new Request('http://app/posts', { method: 'POST' }), async () => {
      await router.write((pool) => pool.query("INSERT INTO posts (body) VALUES ('web')"));
      return Response.json({ ok: true });
    });
    const token = response.headers.get(TOKEN_HEADER);
    expect(token).toMatch(/^l1\./);
    expect(await router.decodeToken(token ?? '')).toBeGreaterThan(0n);
    expect(await response.json()).toEqual({ ok: true });
    const untouched = await withTokenScope(router, new Request('http://app/'), () => new Response('read only'));
    expect(untouched.headers.get(TOKEN_HEADER)).toBeNull();
  });

  it('Node middleware: the token is the session one even when end() is called from another async context', async () => {
    const router = instance();
    const middleware = tokenMiddleware(router);
    // Handlers parked here are resumed by the test, from its own context: outside any session.
    const parked: Array<() => void> = [];
    const server = createServer((req, res) =>
      middleware(req, res, () => {
        parked.push(() => res.end('done'));
      }),
    );
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // A write outside any session: the process's scope requires it, a fresh session does not.
    await router.write((pool) => pool.query("INSERT INTO posts (body) VALUES ('outside')"));
    expect(await router.token()).toMatch(/^l1\./);
    const pending = fetch(url);
    await vi.waitFor(() => expect(parked).toHaveLength(1));
    parked[0]?.();
    const response = await pending;
    expect(await response.text()).toBe('done');
    expect(response.headers.get(TOKEN_HEADER)).toBeNull();
  });

  it('an empty token-store key is no key: the request is served', async () => {
    const router = instance({ tokenStore: new MemoryTokenStore() });
    const response = await withTokenScope(
      router,
      new Request('http://app/', { headers: { 'x-user-id': '' } }),
      async () => Response.json(await router.read((pool) => pool.query('SELECT 1'))),
      { key: (request) => request.headers.get('x-user-id') ?? undefined },
    );
    expect(response.status).toBe(200);
  });
});
