// App process 2: Express + @lagless/drizzle over node-postgres, with the same sessions keyed by user
// id in the same Redis: what the Prisma app wrote for a user, this one reads for that user.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tokenMiddleware } from '@lagless/core/http';
import { redisTokenStore } from '@lagless/core/redis';
import { withReplicas } from '@lagless/drizzle';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import express from 'express';
import { Redis } from 'ioredis';
import pg from 'pg';
import { appConfig, type NoteRead, reportReadiness, runApp, toNoteRead, userId } from './app-env.js';
import { notes } from './schema.js';

const config = appConfig();
const redis = new Redis(config.redis);
const pools = [config.primary, ...config.replicas].map((url) => new pg.Pool({ connectionString: url }));
const [primary, ...replicas] = pools.map((pool) => drizzle(pool));
if (!primary) throw new Error('no primary');
const db = withReplicas(primary, replicas, { tokenStore: redisTokenStore(redis) });

const app = express();
app.use(express.json());
app.use(tokenMiddleware(db.$lagless, { key: (req) => userId(req.headers) }));

app.post('/notes', async (req, res) => {
  const [note] = await db
    .insert(notes)
    .values({ owner: userId(req.headers) ?? 'anonymous', body: String(req.body?.body) })
    .returning();
  res.json(note);
});

app.get('/notes/:id', async (req, res) => {
  // A replica read (a select) that returns the note, or nothing, and the port of the server that ran it.
  const [row] = await db
    .select({ port: sql<number>`inet_server_port()`, id: notes.id, owner: notes.owner, body: notes.body })
    .from(sql`(SELECT 1) AS one`)
    .leftJoin(notes, eq(notes.id, Number(req.params.id)));
  res.json(toNoteRead(row) satisfies NoteRead);
});

await reportReadiness('drizzle', db.$lagless);
const server = createServer(app);
await runApp('drizzle', {
  listen: async () => {
    server.listen(config.port, '127.0.0.1');
    await once(server, 'listening');
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  },
  close: async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await db.$lagless.close();
    await Promise.all(pools.map((pool) => pool.end()));
    redis.disconnect();
  },
});
