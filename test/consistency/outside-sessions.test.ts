// Safe by default: with default options and no session anywhere, a read never misses a write this
// process made. replica1's replay is paused, so it never has a row written after the pause: a read
// it serves after such a write is stale, and the server says who served it. Checked through core,
// the Prisma fast path and the Drizzle adapter. Reads that carry no requirement must still spread
// over the replicas, the paused one included, or "safe" would just mean "on the primary".
import { withReplicas } from '@lagless/drizzle';
import { type Cluster, startCluster } from '@lagless/testkit';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Driver, nodePostgres } from '../../packages/drizzle/test/drivers.js';
import { DDL, items, probe } from '../../packages/drizzle/test/schema.js';
import { fastClient, SCHEMA_SQL } from '../../packages/prisma/test/helpers.js';
import {
  insertItem,
  instance,
  type LoadReport,
  type Observation,
  readItem,
  runReaders,
  servedBy,
} from '../faults/load.js';
import { byNode, exactly, POOL } from './checks.js';

const READERS = 8;
const PAIRS = 500;
const CONTROL_PAIRS = 100;
const PLAIN_READS = 200;
/** Rows every replica replayed before the pause: ids 1..8 in `items` and in "User". */
const OLD_IDS = [1, 2, 3, 4, 5, 6, 7, 8];

let cluster: Cluster;
const opened: App[] = [];

/** One application's client, whatever the library: writes a row, reads one back naming its server. */
interface App {
  ready(): Promise<void>;
  write(note: string): Promise<number>;
  read(id: number): Promise<Observation>;
  /** Misses the port-naming statement cannot show (Prisma's model read). */
  readonly otherMisses: number;
  close(): Promise<void>;
}

interface Path {
  readonly name: string;
  open(options: { consistency?: 'none' }): App;
}

function corePath(): Path {
  return {
    name: 'core',
    open(options) {
      const app = instance(cluster, { pool: POOL, ...options });
      return {
        ready: () => app.router.ready(),
        write: async (note) => (await insertItem(app, note)).id,
        read: (id) => readItem(app, id),
        otherMisses: 0,
        close: () => app.close(),
      };
    },
  };
}

let emails = 0;

function prismaPath(): Path {
  return {
    name: 'Prisma fast path',
    open(options) {
      // rawQueries 'replica': the statement naming the server is routed as a read, like findUnique.
      const { prisma } = fastClient(cluster, options, { rawQueries: 'replica' });
      let modelMisses = 0;
      return {
        ready: () => prisma.$lagless.ready(),
        write: async (note) => (await prisma.user.create({ data: { email: `u${emails++}@x`, name: note } })).id,
        async read(id) {
          const rows = await prisma.$queryRaw<Array<{ port: number; found: boolean }>>`
            SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM "User" WHERE id = ${id}) AS found`;
          // Model reads take their own way through the extension (and findUnique batching): checked
          // too, though only the raw statement can name its server.
          const model = await prisma.user.findUnique({ where: { id } });
          if (!model) modelMisses++;
          return { port: Number(rows[0]?.port), stale: rows[0]?.found !== true || !model };
        },
        get otherMisses() {
          return modelMisses;
        },
        close: () => prisma.$disconnect(),
      };
    },
  };
}

const port = sql<number>`inet_server_port()`.mapWith(Number);

function drizzlePath(driver: Driver): Path {
  return {
    name: `Drizzle over ${driver.name}`,
    open(options) {
      const primary = driver.connect(cluster.primary.url);
      const replicas = cluster.replicas.map((replica) => driver.connect(replica.url));
      const db = withReplicas(
        primary.db,
        replicas.map((replica) => replica.db),
        options,
      );
      return {
        ready: () => db.$lagless.ready(),
        async write(note) {
          const [row] = await db.insert(items).values({ note }).returning({ id: items.id });
          if (!row) throw new Error('insert returned no row');
          return row.id;
        },
        async read(id) {
          const [row] = await db.select({ port, note: items.note }).from(probe).leftJoin(items, eq(items.id, id));
          return { port: Number(row?.port), stale: row?.note == null };
        },
        otherMisses: 0,
        async close() {
          await db.$lagless.close();
          await Promise.all([primary, ...replicas].map((connection) => connection.end()));
        },
      };
    },
  };
}

function open(path: Path, options: { consistency?: 'none' } = {}): App {
  const app = path.open(options);
  opened.push(app);
  return app;
}

/** Reads of rows every replica has: no requirement can stand in their way. */
function readOld(app: App, total: number): Promise<LoadReport> {
  const { read, stop } = exactly(total, (reader, iteration) =>
    app.read(OLD_IDS[(reader + iteration) % OLD_IDS.length] as number),
  );
  return runReaders(READERS, read, stop);
}

function writeThenRead(app: App, total: number, label: string): Promise<LoadReport> {
  const { read, stop } = exactly(total, async (reader, iteration) =>
    app.read(await app.write(`${label} ${reader}.${iteration}`)),
  );
  return runReaders(READERS, read, stop);
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  for (const statement of DDL) await cluster.primary.query(statement);
  await cluster.primary.query(SCHEMA_SQL);
  for (const id of OLD_IDS) {
    await cluster.primary.query('INSERT INTO items (note) VALUES ($1)', [`old ${id}`]);
    await cluster.primary.query('INSERT INTO "User" (email, name) VALUES ($1, $2)', [`old${id}@x`, `old ${id}`]);
  }
  await cluster.waitForReplicas();
  await cluster.replicas[0]?.pauseReplay();
});

afterAll(async () => {
  for (const app of opened) await app.close().catch(() => {});
  await cluster?.stop();
});

// One Drizzle driver: which node a statement runs on is decided in withReplicas, the same for both
// (the adapter's own tests run each driver).
const paths: Path[] = [corePath(), prismaPath(), drizzlePath(nodePostgres)];

describe.each(paths)('default options, no session, replica1 paused: $name', (path) => {
  const paused = () => cluster.replicas[0]?.port ?? -1;

  it('500 write → read pairs outside any session return the row every time', async () => {
    const app = open(path);
    await app.ready();
    const report = await writeThenRead(app, PAIRS, 'outside');
    const summary =
      `[outside sessions, ${path.name}] ${report.reads} pairs, ${report.stale} misses ` +
      `(${app.otherMisses} by a model read), ${report.failed} failed, ${byNode(report, cluster)}, ` +
      `slowest ${report.maxMs.toFixed(1)} ms; ${report.errors.join(' | ')}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.reads, summary).toBe(PAIRS);
    expect(report.stale, summary).toBe(0);
  });

  it('reads with no requirement are served by replicas, the paused one included', async () => {
    const writer = open(path);
    await writer.ready();
    // Before this process writes anything, nothing is required of any replica.
    const beforeWrites = await readOld(writer, PLAIN_READS);
    for (let i = 0; i < 20; i++) await writer.write(`moves the process on ${i}`);
    // Another instance has made no write: the first one's must not hold it back.
    const other = open(path);
    await other.ready();
    const elsewhere = await readOld(other, PLAIN_READS);
    const summary =
      `[no requirement, ${path.name}] before any write: ${byNode(beforeWrites, cluster)}, ` +
      `${beforeWrites.failed} failed, ${beforeWrites.stale} stale; ` +
      `another instance after the writes: ${byNode(elsewhere, cluster)}, ${elsewhere.failed} failed, ` +
      `${elsewhere.stale} stale; ${[...beforeWrites.errors, ...elsewhere.errors].join(' | ')}`;
    console.log(summary);
    for (const report of [beforeWrites, elsewhere]) {
      expect(report.failed, summary).toBe(0);
      expect(report.reads, summary).toBe(PLAIN_READS);
      expect(report.stale, summary).toBe(0);
      expect(servedBy(report, cluster.primary.port), summary).toBe(0);
      expect(servedBy(report, paused()), summary).toBeGreaterThan(0);
    }
  });

  it("the same pairs with consistency: 'none' miss (the checker can fail)", async () => {
    const app = open(path, { consistency: 'none' });
    await app.ready();
    const report = await writeThenRead(app, CONTROL_PAIRS, 'control');
    const summary =
      `[outside sessions, ${path.name}, consistency none] ${report.reads} pairs, ${report.stale} misses, ` +
      `${report.failed} failed, ${byNode(report, cluster)}`;
    console.log(summary);
    expect(report.failed, summary).toBe(0);
    expect(report.stale, summary).toBeGreaterThan(0);
  });
});
