// What an application does with @lagless/drizzle, for either driver: build one drizzle database per
// node, wrap them with withReplicas(), then use the result exactly like a drizzle database.
import type { RouterStats } from '@lagless/core';
import { withReplicas } from '@lagless/drizzle';
import { eq, sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { posts, schema, users } from './schema.js';

export type DriverName = 'node-postgres' | 'postgres.js';

export interface ExampleUrls {
  primary: string;
  replicas: readonly string[];
}

export interface ExampleHooks {
  /** Stops WAL replay on one replica so the read-after-write below has a stale replica to avoid. */
  pauseOneReplica?: () => Promise<void>;
  log?: (line: string) => void;
}

export interface ExampleResult {
  /** Server port of each statement, as the server reported it. */
  selectPort: number;
  insertPort: number;
  /** The row a session read right after its insert saw (always the inserted one). */
  readAfterWrite: string | undefined;
  stats: RouterStats;
}

/** The drizzle database type both drivers share: what the application code below is written against. */
type AppDb = PgDatabase<PgQueryResultHKT, typeof schema>;

function connect(driver: DriverName, url: string): { db: AppDb; end: () => Promise<void> } {
  if (driver === 'node-postgres') {
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    return { db: drizzleNodePg(pool, { schema }), end: () => pool.end() };
  }
  const client = postgres(url, { max: 4, onnotice: () => {} });
  return { db: drizzlePostgresJs(client, { schema }), end: () => client.end() };
}

export async function runExample(
  driver: DriverName,
  urls: ExampleUrls,
  hooks: ExampleHooks = {},
): Promise<ExampleResult> {
  const log = hooks.log ?? (() => {});
  const primary = connect(driver, urls.primary);
  const replicas = urls.replicas.map((url) => connect(driver, url));
  const db = withReplicas(
    primary.db,
    replicas.map((replica) => replica.db),
    { balancer: 'least-connections', consistency: 'session', waitTimeoutMs: 500 },
  );
  try {
    await db.$lagless.ready();
    const port = sql<number>`inet_server_port()`.mapWith(Number);

    // Routing: reads on a replica, writes on the primary. The server names itself.
    const [inserted] = await db.insert(users).values({ name: 'ada' }).returning({ id: users.id, port });
    const [selected] = await db.select({ port }).from(users).limit(1);
    log(`[${driver}] insert ran on port ${inserted?.port}, select on port ${selected?.port}`);
    const withPosts = await db.query.users.findMany({ with: { posts: true }, limit: 3 });
    log(`[${driver}] relational query (a replica): ${withPosts.length} user(s)`);

    // Read-your-writes: inside a session, a read never sees data older than the session's writes,
    // even with a replica whose replay is paused.
    await hooks.pauseOneReplica?.();
    const readAfterWrite = await db.$lagless.session(async () => {
      const [post] = await db
        .insert(posts)
        .values({ authorId: inserted?.id ?? 0, title: `hello from ${driver}` })
        .returning({ id: posts.id });
      const [read] = await db
        .select({ title: posts.title })
        .from(posts)
        .where(eq(posts.id, post?.id ?? -1));
      return read?.title;
    });
    log(`[${driver}] session read after write: ${JSON.stringify(readAfterWrite)}`);

    const stats = db.$lagless.stats();
    for (const replica of stats.replicas) {
      log(
        `[${driver}] ${replica.name}: ${replica.state}, served ${replica.served}, lag ${replica.lagMs ?? '?'} ms / ${replica.lagBytes ?? '?'} bytes`,
      );
    }
    log(`[${driver}] reads: ${JSON.stringify(stats.reads)}, writes: ${stats.writes}`);
    return {
      selectPort: selected?.port ?? -1,
      insertPort: inserted?.port ?? -1,
      readAfterWrite,
      stats,
    };
  } finally {
    await db.$lagless.close();
    await Promise.all([primary, ...replicas].map((node) => node.end()));
  }
}
