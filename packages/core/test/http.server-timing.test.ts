// `serverTiming: true` names the nodes that served a request's reads in a Server-Timing header,
// through each helper on a real server. Which node that was is judged by the server: each read
// returns `inet_server_port()`, and the header must name the node listening on that port.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Cluster, startCluster } from '@lagless/testkit';
import Fastify from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenMiddleware, tokenPlugin, withTokenScope } from '../src/http.js';
import { createRouter, type Router } from '../src/index.js';
import { clusterNodes, endNodes, type PoolNode } from './cluster-nodes.js';
import { serving } from './http-serving.js';

let cluster: Cluster;
let router: Router<pg.Pool>;
let nodes: PoolNode[];
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  cluster = await startCluster({ replicas: 1 });
  const { primary, replicas } = clusterNodes(cluster);
  nodes = [primary, ...replicas];
  router = createRouter<pg.Pool>({ primary, replicas, logger: false });
  await serving(router);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await router?.close();
  await endNodes(...(nodes ?? []));
  await cluster?.stop();
});

/** The ports that served this request's reads: two replica reads and one forced onto the primary. */
async function handle(): Promise<number[]> {
  const port = (forced: boolean) =>
    router.read(
      async (pool) => Number((await pool.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]?.port),
      forced ? { primary: true } : undefined,
    );
  return [await port(false), await port(false), await port(true)];
}

function nodeOn(port: number): string {
  const node = nodes.find((n) => n.port === port);
  if (node === undefined) throw new Error(`no node listens on ${port}`);
  return node.name;
}

type Serve = (options: { serverTiming?: boolean }) => Promise<string>;

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const servers: Record<string, Serve> = {
  'tokenMiddleware (node:http)': (options) => {
    const middleware = tokenMiddleware(router, options);
    return listen(
      createServer((req, res) =>
        middleware(req, res, () => {
          void handle().then((ports) => {
            res.setHeader('server-timing', 'app;dur=1');
            res.end(JSON.stringify(ports));
          });
        }),
      ),
    );
  },
  'tokenPlugin (Fastify)': async (options) => {
    const app = Fastify();
    await app.register(tokenPlugin(router, options));
    app.get('/', async (_request, reply) => {
      reply.header('server-timing', 'app;dur=1');
      return handle();
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  },
  'withTokenScope (web Request)': (options) =>
    listen(
      createServer(async (req, res) => {
        const request = new Request(`http://${req.headers.host}${req.url}`);
        const response = await withTokenScope(
          router,
          request,
          async () => Response.json(await handle(), { headers: { 'server-timing': 'app;dur=1' } }),
          options,
        );
        res.writeHead(response.status, Object.fromEntries(response.headers));
        res.end(await response.text());
      }),
    ),
};

describe.each(Object.entries(servers))('%s', (_name, serve) => {
  it('serverTiming names each node that served a read, with its count, beside the app’s own entry', async () => {
    const url = await serve({ serverTiming: true });
    const response = await fetch(url);
    const ports = (await response.json()) as number[];
    const [replicaRead, again, primaryRead] = ports.map(nodeOn);
    expect(replicaRead).toBe(again);
    expect(replicaRead).not.toBe('primary');
    expect(primaryRead).toBe('primary');
    const timing = response.headers.get('server-timing') ?? '';
    expect(timing).toContain('app;dur=1');
    expect(timing).toMatch(new RegExp(`lagless;desc="${replicaRead} x2";dur=\\d+\\.\\d`));
    expect(timing).toMatch(/lagless;desc="primary";dur=\d+\.\d/);
  });

  it('without serverTiming, no lagless entry', async () => {
    const url = await serve({});
    const response = await fetch(url);
    await response.json();
    expect(response.headers.get('server-timing')).toBe('app;dur=1');
  });
});

it('serverTiming must be a boolean', () => {
  expect(() => tokenMiddleware(router, { serverTiming: 'yes' as unknown as boolean })).toThrow(
    /Invalid option tokenMiddleware\(options\)\.serverTiming: expected a boolean, received "yes"/,
  );
});
