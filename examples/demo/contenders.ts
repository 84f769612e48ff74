// The four routers the story drives side by side, behind one small interface: lagless over Prisma
// (fast path) and over Drizzle, and the packages people use today, from node_modules as published.
import type { LaglessHandle, RouterOptions, TokenStore } from '@lagless/core';
import { withReplicas } from '@lagless/drizzle';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas as officialReadReplicas } from '@prisma/extension-read-replicas';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { withReplicas as drizzleWithReplicas } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { PrismaClient } from './generated/client.js';
import { itemSeen, items } from './schema.js';

export type ContenderId = 'lagless-prisma' | 'lagless-drizzle' | 'prisma-extension' | 'drizzle-with-replicas';

export interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  /** lagless's `$lagless` (stats, events, sessions); undefined for the peers, which have none. */
  readonly lagless: LaglessHandle | undefined;
  /** Inserts an item on the primary; resolves to its id. */
  write(owner: string, body: string): Promise<number>;
  /**
   * Reads item `id` through the router: the port of the server that returned it, or null when the
   * node that served the read did not have it yet (a stale read).
   */
  read(id: number): Promise<number | null>;
  /** Runs `fn` as one request of `user` would: in a lagless session; as is for the peers. */
  request<T>(user: string, fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface NodeUrl {
  name: string;
  url: string;
}

export interface ContenderSetup {
  primary: NodeUrl;
  replicas: readonly NodeUrl[];
  /** A token store for lagless's keyed sessions (Redis), by key prefix; undefined: unkeyed sessions. */
  tokenStore: ((prefix: string) => TokenStore) | undefined;
}

/**
 * Frequent probes and a short readmission so the story's faults show within seconds; a replica more
 * than 500 ms behind takes no reads (lag awareness is off by default).
 */
const ROUTER_OPTIONS = {
  probeIntervalMs: 200,
  probeTimeoutMs: 2000,
  readmission: { initialMs: 200, maxMs: 1000 },
  maxLagMs: 500,
  logger: false, // the status page shows the events
} as const satisfies Partial<RouterOptions<unknown>>;

const POOL_MAX = 6;

function pgPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX, connectionTimeoutMillis: 2000 });
  // An idle connection of a killed replica errors on its own: without a listener that is a crash.
  pool.on('error', () => {});
  return pool;
}

function prismaClient(url: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: POOL_MAX }) });
}

function laglessSession(handle: LaglessHandle, keyed: boolean) {
  return <T>(user: string, fn: () => Promise<T>): Promise<T> =>
    keyed ? handle.session({ key: user }, fn) : handle.session(fn);
}

export function createContenders(setup: ContenderSetup): Contender[] {
  const { primary, replicas, tokenStore } = setup;
  const keyed = tokenStore !== undefined;
  const store = (prefix: string) => (tokenStore ? { tokenStore: tokenStore(prefix) } : {});

  const laglessPrisma = new PrismaClient({
    adapter: laglessAdapter({
      primary: { name: primary.name, adapter: new PrismaPg({ connectionString: primary.url, max: POOL_MAX }) },
      replicas: replicas.map((r) => ({
        name: r.name,
        adapter: new PrismaPg({ connectionString: r.url, max: POOL_MAX }),
      })),
      ...ROUTER_OPTIONS,
      ...store('lagless:demo:prisma:'),
    }),
  }).$extends(readReplicas());

  const officialReplicas = replicas.map((r) => prismaClient(r.url));
  const official = prismaClient(primary.url).$extends(
    // The extension types its replicas as the base PrismaClient of @prisma/client; ours is generated.
    officialReadReplicas({ replicas: officialReplicas as never }),
  );

  const laglessPools = { primary: pgPool(primary.url), replicas: replicas.map((r) => pgPool(r.url)) };
  const laglessDrizzle = withReplicas(
    drizzle(laglessPools.primary),
    laglessPools.replicas.map((pool) => drizzle(pool)),
    {
      ...ROUTER_OPTIONS,
      primaryName: primary.name,
      replicaNames: replicas.map((r) => r.name),
      ...store('lagless:demo:drizzle:'),
    },
  );

  const peerPools = { primary: pgPool(primary.url), replicas: replicas.map((r) => pgPool(r.url)) };
  const [firstPeer, ...otherPeers] = peerPools.replicas.map((pool) => drizzle(pool));
  if (!firstPeer) throw new Error('the demo needs at least one replica');
  const peerDrizzle = drizzleWithReplicas(drizzle(peerPools.primary), [firstPeer, ...otherPeers]);

  const endPools = (pools: { primary: pg.Pool; replicas: pg.Pool[] }) =>
    Promise.all([pools.primary, ...pools.replicas].map((pool) => pool.end().catch(() => {}))).then(() => {});
  const asIs = <T>(_user: string, fn: () => Promise<T>) => fn();

  return [
    {
      id: 'lagless-prisma',
      label: 'lagless Prisma (fast path)',
      lagless: laglessPrisma.$lagless,
      write: async (owner, body) => (await laglessPrisma.item.create({ data: { owner, body } })).id,
      read: async (id) => (await laglessPrisma.itemSeen.findUnique({ where: { id } }))?.port ?? null,
      request: laglessSession(laglessPrisma.$lagless, keyed),
      close: async () => {
        await laglessPrisma.$lagless.close();
        await laglessPrisma.$disconnect();
      },
    },
    {
      id: 'lagless-drizzle',
      label: 'lagless Drizzle',
      lagless: laglessDrizzle.$lagless,
      write: async (owner, body) => {
        const [row] = await laglessDrizzle.insert(items).values({ owner, body }).returning({ id: items.id });
        if (!row) throw new Error('INSERT … RETURNING returned no row');
        return row.id;
      },
      read: async (id) =>
        (await laglessDrizzle.select({ port: itemSeen.port }).from(itemSeen).where(eq(itemSeen.id, id)))[0]?.port ??
        null,
      request: laglessSession(laglessDrizzle.$lagless, keyed),
      close: async () => {
        await laglessDrizzle.$lagless.close();
        await endPools(laglessPools);
      },
    },
    {
      id: 'prisma-extension',
      label: '@prisma/extension-read-replicas',
      lagless: undefined,
      write: async (owner, body) => (await official.item.create({ data: { owner, body } })).id,
      read: async (id) => (await official.itemSeen.findUnique({ where: { id } }))?.port ?? null,
      request: asIs,
      close: async () => {
        await official.$disconnect();
        await Promise.all(officialReplicas.map((client) => client.$disconnect()));
      },
    },
    {
      id: 'drizzle-with-replicas',
      label: "drizzle-orm's withReplicas",
      lagless: undefined,
      write: async (owner, body) => {
        const [row] = await peerDrizzle.insert(items).values({ owner, body }).returning({ id: items.id });
        if (!row) throw new Error('INSERT … RETURNING returned no row');
        return row.id;
      },
      read: async (id) =>
        (await peerDrizzle.select({ port: itemSeen.port }).from(itemSeen).where(eq(itemSeen.id, id)))[0]?.port ?? null,
      request: asIs,
      close: () => endPools(peerPools),
    },
  ];
}
