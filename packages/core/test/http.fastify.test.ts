// The Fastify plugin, through real Fastify 5 servers over a real cluster: sessions per request (also
// when the body arrives after the lifecycle started), encapsulation, tokens in and out, clean ends.
import { AsyncLocalStorage } from 'node:async_hooks';
import { type Cluster, startCluster } from '@lagless/testkit';
import Fastify, {
  type FastifyInstance,
  type FastifyPluginCallback,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  FASTIFY_PLUGIN_NAME,
  type FastifyTokenPlugin,
  TOKEN_COOKIE,
  TOKEN_HEADER,
  type TokenScope,
  tokenPlugin,
} from '../src/http.js';
import { createRouter, MemoryTokenStore, type Router, type RouterOptions } from '../src/index.js';
import { expectInvalidOption } from './assertions.js';
import { clusterNodes, endNodes, type PoolNode } from './cluster-nodes.js';
import { serving } from './http-serving.js';

let cluster: Cluster;
const routers: Router<pg.Pool>[] = [];
const nodes: PoolNode[] = [];
const apps: FastifyInstance[] = [];

function instance(options: Partial<RouterOptions<pg.Pool>> = {}): Router<pg.Pool> {
  const { primary, replicas } = clusterNodes(cluster);
  nodes.push(primary, ...replicas);
  const router = createRouter<pg.Pool>({ primary, replicas, waitTimeoutMs: 100, logger: false, ...options });
  routers.push(router);
  return router;
}

/** A scope that counts the sessions still open: none may outlive its request. */
function counted(router: Router<pg.Pool>): TokenScope & { open: number; started: number } {
  const scope = {
    open: 0,
    started: 0,
    session<T>(init: Parameters<TokenScope['session']>[0], fn: () => Promise<T> | T): Promise<T> {
      scope.open++;
      scope.started++;
      return router.session(init, fn).finally(() => {
        scope.open--;
      });
    },
    token: () => router.token(),
  };
  return scope;
}

/** A marker set by a test hook after the plugin's: shows where Fastify lost the async context. */
const probe = new AsyncLocalStorage<string>();

interface Row {
  id: number;
  port: number;
}

/** Routes over `router`: POST /notes writes, GET /notes/:id reads, GET /token says what the session holds. */
function routes(app: FastifyInstance, router: Router<pg.Pool>): void {
  app.post<{ Body: { body?: string } | undefined }>('/notes', async (request) => {
    const id = await router.write(async (pool) => {
      const { rows } = await pool.query<{ id: number }>('INSERT INTO notes (body) VALUES ($1) RETURNING id', [
        request.body?.body ?? 'fastify',
      ]);
      return rows[0]?.id;
    });
    // The session's token as the handler sees it, and the test hook's marker (if still in context).
    return { id, token: (await router.token()) ?? null, probe: probe.getStore() ?? null };
  });
  app.get<{ Params: { id: string } }>('/notes/:id', async (request) => {
    const row = await router.read(async (pool) => {
      const { rows } = await pool.query<Row>('SELECT id, inet_server_port() AS port FROM notes WHERE id = $1', [
        Number(request.params.id),
      ]);
      return rows[0] ?? null;
    });
    return row;
  });
  app.get('/token', async () => ({ token: (await router.token()) ?? null, probe: probe.getStore() ?? null }));
  app.post('/token', async () => ({ token: (await router.token()) ?? null, probe: probe.getStore() ?? null }));
}

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app);
  return app.listen({ port: 0, host: '127.0.0.1' });
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 1 });
  await cluster.primary.query('CREATE TABLE notes (id serial PRIMARY KEY, body text)');
  await cluster.waitForReplicas();
});

afterAll(async () => {
  for (const app of apps) await app.close();
  for (const router of routers) await router.close();
  await endNodes(...nodes);
  await cluster?.stop();
});

describe('tokenPlugin: types', () => {
  it('is a Fastify 5 plugin without core importing fastify', () => {
    expectTypeOf<FastifyTokenPlugin>().toExtend<FastifyPluginCallback>();
    // The key function sees Fastify's own request type when asked for it.
    const keyed = (router: Router<pg.Pool>) =>
      tokenPlugin(router, { key: (request: FastifyRequest) => String(request.headers['x-user-id']) });
    expectTypeOf(keyed).returns.toExtend<FastifyPluginCallback>();
    const register = (app: FastifyInstance, router: Router<pg.Pool>) => app.register(tokenPlugin(router));
    expectTypeOf(register).returns.not.toBeNever();
  });

  it('checks its options when made', () => {
    const router = instance();
    expectInvalidOption(() => tokenPlugin({} as TokenScope), 'tokenPlugin(scope)');
    expectInvalidOption(
      () => tokenPlugin(router, { cookie: 'yes' as unknown as boolean }),
      'tokenPlugin(options).cookie',
    );
    expectInvalidOption(
      () => tokenPlugin(router, { cookieAttributes: 'Path=/\r\nX-Evil: 1' }),
      'tokenPlugin(options).cookieAttributes',
    );
    expectInvalidOption(() => tokenPlugin(router, { key: 'user' as never }), 'tokenPlugin(options).key');
  });
});

describe('tokenPlugin: through a real server', () => {
  it('runs each request in its own session and sends the token back only when it moved on', async () => {
    const router = instance();
    const scope = counted(router);
    const app = Fastify();
    app.register(tokenPlugin(scope));
    app.addHook('onRequest', (_request, _reply, done) => probe.run('marker', done));
    routes(app, router);
    const url = await listen(app);
    // A token names the cluster: its identity must be known (a loaded machine can time out the first check).
    await serving(router);

    // A write made outside any session: the process's scope now requires it.
    await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('outside')"));
    expect(await router.token()).toMatch(/^l1\./);

    // A request that neither reads nor writes requires nothing: it is not the process's scope.
    const idle = await fetch(`${url}/token`);
    expect(await idle.json()).toEqual({ token: null, probe: 'marker' });
    expect(idle.headers.get(TOKEN_HEADER)).toBeNull();
    expect(idle.headers.get('set-cookie')).toBeNull();

    const posted = await fetch(`${url}/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ body: 'hello' }),
    });
    const body = (await posted.json()) as { id: number; token: string };
    const token = posted.headers.get(TOKEN_HEADER);
    expect(token).toBe(body.token);
    expect(await router.decodeToken(token ?? '')).toBeGreaterThan(0n);
    expect(posted.headers.get('set-cookie')).toBe(`${TOKEN_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax`);

    // The same token back, nothing new: no header, no cookie.
    const again = await fetch(`${url}/token`, { headers: { [TOKEN_HEADER]: token ?? '' } });
    expect(((await again.json()) as { token: string }).token).toBe(token);
    expect(again.headers.get(TOKEN_HEADER)).toBeNull();
    expect(again.headers.get('set-cookie')).toBeNull();
    await vi.waitFor(() => expect(scope.open).toBe(0));
    expect(scope.started).toBe(3);
  });

  it('finds the session again when a hook resumed the lifecycle from another async context', async () => {
    const router = instance();
    const app = Fastify();
    app.register(tokenPlugin(router));
    app.addHook('onRequest', (_request, _reply, done) => probe.run('marker', done));
    // A callback-style hook whose callback comes from elsewhere (a client library's own socket,
    // say): the lifecycle goes on in that context, not the request's. Here: the test's own.
    const parked: Array<() => void> = [];
    app.addHook('onRequest', (_request, _reply, done) => {
      parked.push(() => done());
    });
    routes(app, router);
    const url = await listen(app);
    await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('outside')"));

    const response = fetch(`${url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ body: 'late' }),
    });
    await vi.waitFor(() => expect(parked).toHaveLength(1));
    parked[0]?.();
    const answered = await response;
    expect(answered.status).toBe(200);
    // The control: the context was lost (the marker set before the detour is gone), and outside a
    // session this process's scope holds a token; the handler found the request's session again.
    expect(await answered.json()).toEqual({ token: null, probe: null });
    expect(await router.token()).toMatch(/^l1\./);
    expect(answered.headers.get(TOKEN_HEADER)).toBeNull();
  });

  it('covers sibling plugins and nested ones, not an instance beside the one it is registered on', async () => {
    const router = instance();
    const app = Fastify();
    // Registered before the plugin: covered all the same (Fastify builds route hooks once all are loaded).
    app.register(async (earlier) => {
      earlier.post('/earlier', async () => {
        await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('earlier')"));
        return { token: (await router.token()) ?? null };
      });
    });
    app.register(tokenPlugin(router));
    app.register(async (sibling) => {
      sibling.post('/sibling', async () => {
        await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('sibling')"));
        return { token: (await router.token()) ?? null };
      });
      sibling.register(async (nested) => {
        nested.post('/nested', async () => {
          await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('nested')"));
          return { token: (await router.token()) ?? null };
        });
      });
    });
    const url = await listen(app);
    for (const path of ['/earlier', '/sibling', '/nested']) {
      const response = await fetch(`${url}${path}`, { method: 'POST' });
      const { token } = (await response.json()) as { token: string | null };
      expect(token, path).toMatch(/^l1\./);
      expect(response.headers.get(TOKEN_HEADER), path).toBe(token);
    }

    // Registered inside one plugin, it stays there: an app made of two plugins, one with it.
    const split = Fastify();
    split.register(async (withIt) => {
      withIt.register(tokenPlugin(router));
      withIt.post('/with', async () => {
        await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('with')"));
        return { token: (await router.token()) ?? null };
      });
    });
    split.register(async (without) => {
      without.post('/without', async () => {
        await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('without')"));
        // Outside any session: the process's scope.
        return { token: (await router.token()) ?? null };
      });
    });
    const splitUrl = await listen(split);
    const withIt = await fetch(`${splitUrl}/with`, { method: 'POST' });
    expect(withIt.headers.get(TOKEN_HEADER)).toMatch(/^l1\./);
    const without = await fetch(`${splitUrl}/without`, { method: 'POST' });
    expect(((await without.json()) as { token: string | null }).token).toMatch(/^l1\./);
    expect(without.headers.get(TOKEN_HEADER)).toBeNull();
    expect(app.hasPlugin(FASTIFY_PLUGIN_NAME)).toBe(true);
  });

  it('sends the token with error replies, through inject(), and clears a cookie holding a bad token', async () => {
    const router = instance();
    const app = Fastify();
    app.register(tokenPlugin(router));
    app.post('/fails', async () => {
      await router.write((pool) => pool.query("INSERT INTO notes (body) VALUES ('then fails')"));
      throw new Error('after the write');
    });
    routes(app, router);
    const url = await listen(app);

    const failed = await fetch(`${url}/fails`, { method: 'POST' });
    expect(failed.status).toBe(500);
    expect(failed.headers.get(TOKEN_HEADER)).toMatch(/^l1\./);

    const injected = await app.inject({ method: 'POST', url: '/notes', payload: { body: 'injected' } });
    expect(injected.statusCode).toBe(200);
    expect(injected.headers[TOKEN_HEADER]).toBe(injected.json<{ token: string }>().token);

    for (const bad of ['l1.0000000000000001.1.xyz', 'garbage', 'x'.repeat(5000)]) {
      const viaCookie = await fetch(`${url}/token`, { headers: { cookie: `a=1; ${TOKEN_COOKIE}=${bad}` } });
      expect(viaCookie.status).toBe(200);
      expect(((await viaCookie.json()) as { token: string | null }).token).toBeNull();
      expect(viaCookie.headers.get('set-cookie')).toBe(`${TOKEN_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax`);
      const viaHeader = await fetch(`${url}/token`, { headers: { [TOKEN_HEADER]: bad } });
      expect(viaHeader.status).toBe(200);
      expect(viaHeader.headers.get(TOKEN_HEADER)).toBeNull();
    }
  });

  it('ends the session when the client goes away, and for hijacked replies', async () => {
    const router = instance();
    const scope = counted(router);
    const app = Fastify();
    app.register(tokenPlugin(scope));
    let entered: () => void = () => {};
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let aborted: () => void = () => {};
    const clientGone = new Promise<void>((resolve) => {
      aborted = resolve;
    });
    app.get('/slow', async (request) => {
      request.raw.once('close', aborted);
      entered();
      await released;
      return { late: true };
    });
    app.get('/hijacked', (_request: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      reply.raw.end('raw');
    });
    const url = await listen(app);

    const controller = new AbortController();
    const pending = fetch(`${url}/slow`, { signal: controller.signal }).catch((error: unknown) => error);
    await inHandler;
    expect(scope.open).toBe(1);
    controller.abort();
    await clientGone;
    // The session is over although the handler has not returned yet.
    await vi.waitFor(() => expect(scope.open).toBe(0));
    release();
    expect(await pending).toBeInstanceOf(Error);

    expect(await (await fetch(`${url}/hijacked`)).text()).toBe('raw');
    await vi.waitFor(() => expect(scope.open).toBe(0));
    expect(scope.started).toBe(2);
  });

  it('continues a keyed session from the token store on another instance', async () => {
    const store = new MemoryTokenStore();
    const key = (request: FastifyRequest) => request.headers['x-user-id'] as string | undefined;
    const [routerA, routerB] = [instance({ tokenStore: store }), instance({ tokenStore: store })];
    const [a, b] = [Fastify(), Fastify()];
    a.register(tokenPlugin(routerA, { key }));
    b.register(tokenPlugin(routerB, { key }));
    routes(a, routerA);
    routes(b, routerB);
    const [urlA, urlB] = [await listen(a), await listen(b)];
    await Promise.all([serving(routerA), serving(routerB)]);
    const replica = cluster.replicas[0];
    await replica?.pauseReplay();
    try {
      const posted = await fetch(`${urlA}/notes`, { method: 'POST', headers: { 'x-user-id': 'ada' } });
      const { id } = (await posted.json()) as { id: number };
      // No token sent: the key alone carries the write to instance B.
      const read = await fetch(`${urlB}/notes/${id}`, { headers: { 'x-user-id': 'ada' } });
      expect(((await read.json()) as Row | null)?.id).toBe(id);
      // The control: another user's session may read the paused replica, which lacks the row.
      const other = await fetch(`${urlB}/notes/${id}`, { headers: { 'x-user-id': 'grace' } });
      expect(await other.json()).toBeNull();
      // An empty key is no key: the request is served, not failed.
      expect((await fetch(`${urlB}/notes/${id}`, { headers: { 'x-user-id': '' } })).status).toBe(200);
    } finally {
      await replica?.resumeReplay();
    }
  });
});
