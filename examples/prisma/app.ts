// What an application does with @lagless/prisma: one PrismaClient over a routing driver adapter
// (one PrismaPg per node), extended with readReplicas(). Everything else is plain Prisma.
import type { RouterStats } from '@lagless/core';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/client.js';

/** The tables of prisma/schema.prisma. */
export const SCHEMA_SQL = [
  'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)',
  'CREATE TABLE "Post" (id serial PRIMARY KEY, title text NOT NULL, "authorId" int NOT NULL REFERENCES "User"(id))',
];

export interface ExampleUrls {
  primary: string;
  replicas: readonly string[];
}

export interface ExampleHooks {
  /** Stops WAL replay on one replica, so the read-after-write below has a stale replica to avoid. */
  pauseOneReplica?: () => Promise<void>;
  log?: (line: string) => void;
}

export interface ExampleResult {
  /** Server ports, as the servers reported them. */
  replicaPort: number;
  primaryPort: number;
  /** The email a session read right after creating the user saw (always the created one). */
  readAfterWrite: string | undefined;
  /** The token that carries the session's guarantee to the next request (a header or cookie). */
  token: string | undefined;
  stats: RouterStats;
}

export function createClient(urls: ExampleUrls) {
  const adapter = laglessAdapter({
    primary: new PrismaPg({ connectionString: urls.primary }),
    replicas: urls.replicas.map((url) => new PrismaPg({ connectionString: url })),
    balancer: 'least-connections',
  });
  return new PrismaClient({ adapter }).$extends(readReplicas());
}

export async function runExample(urls: ExampleUrls, hooks: ExampleHooks = {}): Promise<ExampleResult> {
  const log = hooks.log ?? (() => {});
  const prisma = createClient(urls);
  try {
    const port = async (client: { $queryRaw: typeof prisma.$queryRaw }) =>
      Number((await client.$queryRaw<Array<{ port: number }>>`SELECT inet_server_port() AS port`)[0]?.port);
    const replicaPort = await port(prisma.$replica());
    const primaryPort = await port(prisma); // raw SQL goes to the primary unless rawQueries: 'replica'
    log(`a forced replica read ran on port ${replicaPort}; raw SQL ran on the primary, port ${primaryPort}`);

    await hooks.pauseOneReplica?.();
    const { readAfterWrite, token } = await prisma.$lagless.session(async () => {
      const user = await prisma.user.create({ data: { email: `ada-${Date.now()}@example.com`, name: 'Ada' } });
      // A replica read, but never older than the create above: a replica that replayed it, or the primary.
      const again = await prisma.user.findUnique({ where: { id: user.id } });
      return { readAfterWrite: again?.email, token: await prisma.$lagless.token() };
    });
    log(`session read-after-write saw ${readAfterWrite}; token for the next request: ${token}`);

    // The next request continues from the token (e.g. the x-lagless-token header).
    const count = await prisma.$lagless.session({ token }, () => prisma.user.count());
    log(`next request counts ${count} user(s)`);

    const stats = prisma.$lagless.stats();
    for (const replica of stats.replicas) {
      log(`${replica.name}: ${replica.state}, served ${replica.served}, lag ${replica.lagBytes ?? '?'} bytes`);
    }
    log(`reads: ${JSON.stringify(stats.reads)}, writes: ${stats.writes}`);
    return { replicaPort, primaryPort, readAfterWrite, token, stats };
  } finally {
    await prisma.$disconnect();
  }
}
