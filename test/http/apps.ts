// Shared by the HTTP tests: one small notes app, written once per ORM (Prisma fast path, Drizzle,
// core over pg) and served once per framework (Fastify, Express, Hono), each a real HTTP server.
// Every read names its server with inet_server_port() in the statement that reads the row.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { RouterOptions } from '@lagless/core';
import { type TokenScope, tokenMiddleware, tokenPlugin, withTokenScope } from '@lagless/core/http';
import { withReplicas } from '@lagless/drizzle';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import type { Cluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable } from 'drizzle-orm/pg-core';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import pg from 'pg';
import { PrismaClient } from '../../examples/multi-instance/generated/client.js';
import { notes, SCHEMA_SQL } from '../../examples/multi-instance/schema.js';
import { serving } from '../../packages/core/test/http-serving.js';
import { instance } from '../faults/load.js';

/** One row on every node: something to select from when only the serving server matters. */
const probe = pgTable('probe', { id: integer('id').primaryKey() });

export const APP_SCHEMA_SQL = [
  ...SCHEMA_SQL,
  'CREATE TABLE probe (id int PRIMARY KEY)',
  'INSERT INTO probe VALUES (1)',
];

/** What a read saw: the port of the server that ran it, and whether the row was there. */
export interface Seen {
  readonly port: number;
  readonly found: boolean;
}

/** One application's data layer, whatever the ORM. */
export interface Orm {
  readonly name: string;
  /** What the HTTP helpers take: a router or an adapter's `$lagless`. */
  readonly scope: TokenScope;
  ready(): Promise<void>;
  write(owner: string, body: string): Promise<number>;
  read(id: number): Promise<Seen>;
  close(): Promise<void>;
}

type Options = Partial<Omit<RouterOptions<unknown>, 'primary' | 'replicas'>>;

/** Pools sized for a shared two-core box running three servers: connecting can take a while. */
const POOL = { max: 8, connectionTimeoutMillis: 5000 } as const;

export function prismaOrm(cluster: Cluster, options: Options = {}): Orm {
  const adapter = laglessAdapter({
    primary: new PrismaPg({ connectionString: cluster.primary.url, ...POOL }),
    replicas: cluster.replicas.map((replica) => new PrismaPg({ connectionString: replica.url, ...POOL })),
    logger: false,
    ...options,
  });
  // rawQueries 'replica': the statement naming its server is routed as a read, like findUnique.
  const prisma = new PrismaClient({ adapter }).$extends(readReplicas({ rawQueries: 'replica' }));
  return {
    name: 'Prisma',
    scope: prisma.$lagless,
    ready: () => serving(prisma.$lagless),
    write: async (owner, body) => (await prisma.note.create({ data: { owner, body } })).id,
    async read(id) {
      const rows = await prisma.$queryRaw<Array<{ port: number; found: boolean }>>`
        SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM "Note" WHERE id = ${id}) AS found`;
      // The model read takes its own way through the extension: checked too, though only the raw
      // statement can name its server.
      const model = await prisma.note.findUnique({ where: { id } });
      return { port: Number(rows[0]?.port), found: rows[0]?.found === true && model !== null };
    },
    close: () => prisma.$disconnect(),
  };
}

const port = sql<number>`inet_server_port()`.mapWith(Number);

export function drizzleOrm(cluster: Cluster, options: Options = {}): Orm {
  const pools = [cluster.primary.url, ...cluster.replicas.map((replica) => replica.url)].map(
    (url) => new pg.Pool({ connectionString: url, ...POOL }),
  );
  const [primary, ...replicas] = pools.map((pool) => drizzle(pool));
  if (!primary) throw new Error('no primary pool');
  const db = withReplicas(primary, replicas, { logger: false, ...options });
  return {
    name: 'Drizzle',
    scope: db.$lagless,
    ready: () => serving(db.$lagless),
    async write(owner, body) {
      const [row] = await db.insert(notes).values({ owner, body }).returning({ id: notes.id });
      if (!row) throw new Error('insert returned no row');
      return row.id;
    },
    async read(id) {
      const [row] = await db.select({ port, body: notes.body }).from(probe).leftJoin(notes, eq(notes.id, id));
      return { port: Number(row?.port), found: row?.body != null };
    },
    async close() {
      await db.$lagless.close();
      await Promise.all(pools.map((pool) => pool.end().catch(() => {})));
    },
  };
}

export function coreOrm(cluster: Cluster, options: Options = {}): Orm {
  const app = instance(cluster, { pool: POOL, ...options });
  return {
    name: 'core',
    scope: app.router,
    ready: () => serving(app.router),
    write: (owner, body) =>
      app.router.write(async (pool) => {
        const { rows } = await pool.query<{ id: number }>(
          'INSERT INTO "Note" (owner, body) VALUES ($1, $2) RETURNING id',
          [owner, body],
        );
        return Number(rows[0]?.id);
      }),
    read: (id) =>
      app.router.read(async (pool) => {
        const { rows } = await pool.query<{ port: number; found: boolean }>(
          'SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM "Note" WHERE id = $1) AS found',
          [id],
        );
        return { port: Number(rows[0]?.port), found: rows[0]?.found === true };
      }),
    close: () => app.close(),
  };
}

/** A running server: POST /notes {owner, body} → {id}; GET /notes/:id → Seen. */
export interface Served {
  readonly url: string;
  close(): Promise<void>;
}

export type Framework = (orm: Orm) => Promise<Served>;

interface NoteInput {
  owner: string;
  body: string;
}

export const fastify: Framework = async (orm) => {
  const app = Fastify();
  app.register(tokenPlugin(orm.scope));
  app.post<{ Body: NoteInput }>('/notes', async (request) => ({
    id: await orm.write(request.body.owner, request.body.body),
  }));
  app.get<{ Params: { id: string } }>('/notes/:id', (request) => orm.read(Number(request.params.id)));
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
};

export const expressApp: Framework = async (orm) => {
  const app = express();
  app.use(express.json());
  app.use(tokenMiddleware(orm.scope));
  app.post('/notes', async (req, res) => {
    const { owner, body } = req.body as NoteInput;
    res.json({ id: await orm.write(owner, body) });
  });
  app.get('/notes/:id', async (req, res) => {
    res.json(await orm.read(Number(req.params.id)));
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
};

export const hono: Framework = async (orm) => {
  const app = new Hono();
  app.post('/notes', async (c) => {
    const { owner, body } = await c.req.json<NoteInput>();
    return c.json({ id: await orm.write(owner, body) });
  });
  app.get('/notes/:id', async (c) => c.json(await orm.read(Number(c.req.param('id')))));
  // The whole app inside one scope per request: the response leaves with the token attached.
  const server = serve({
    fetch: (request, env) => withTokenScope(orm.scope, request, (r) => app.fetch(r, env)),
    port: 0,
    hostname: '127.0.0.1',
  }) as Server;
  if (!server.listening) await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
};

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
