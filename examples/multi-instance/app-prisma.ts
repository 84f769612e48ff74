// App process 1: Fastify + @lagless/prisma. Each request runs in a session keyed by its user id, so
// its writes' position goes to Redis and any instance continues from it; the token also travels
// back in the x-lagless-token header and lagless_token cookie.
import { tokenPlugin } from '@lagless/core/http';
import { redisTokenStore } from '@lagless/core/redis';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { PrismaPg } from '@prisma/adapter-pg';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { appConfig, type NoteRead, reportReadiness, runApp, toNoteRead, userId } from './app-env.js';
import { PrismaClient } from './generated/client.js';

const config = appConfig();
const redis = new Redis(config.redis);
const adapter = laglessAdapter({
  primary: new PrismaPg({ connectionString: config.primary }),
  replicas: config.replicas.map((url) => new PrismaPg({ connectionString: url })),
  tokenStore: redisTokenStore(redis),
});
// rawQueries 'replica': the read below is raw SQL (to name its server), routed like findUnique.
const prisma = new PrismaClient({ adapter }).$extends(readReplicas({ rawQueries: 'replica' }));

const app = Fastify();
app.register(tokenPlugin(prisma.$lagless, { key: (request) => userId(request.headers) }));

app.post<{ Body: { body: string } }>('/notes', async (request) =>
  prisma.note.create({ data: { owner: userId(request.headers) ?? 'anonymous', body: request.body.body } }),
);

app.get<{ Params: { id: string } }>('/notes/:id', async (request): Promise<NoteRead> => {
  // One statement returns the note (or nothing) and the port of the server that ran it.
  const rows = await prisma.$queryRawUnsafe<Array<{ port: number; id: number; owner: string; body: string }>>(
    'SELECT inet_server_port() AS port, n.id, n.owner, n.body FROM (SELECT 1) AS one LEFT JOIN "Note" n ON n.id = $1',
    Number(request.params.id),
  );
  return toNoteRead(rows[0]);
});

await reportReadiness('prisma', prisma.$lagless);
await runApp('prisma', {
  listen: () => app.listen({ port: config.port, host: '127.0.0.1' }),
  close: async () => {
    await app.close();
    await prisma.$disconnect();
    redis.disconnect();
  },
});
