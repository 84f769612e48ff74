import type { Cluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { type LaglessAdapterOptions, laglessAdapter, type ReadReplicasOptions, readReplicas } from '../src/index.js';
import { PrismaClient } from './generated/client.js';

/** The schema of prisma/schema.prisma, applied with SQL (prisma migrate needs an engine we cannot download). */
export const SCHEMA_SQL = `
  CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL);
  CREATE TABLE "Post" (id serial PRIMARY KEY, title text NOT NULL, "authorId" int NOT NULL REFERENCES "User"(id));
`;

export async function applySchema(cluster: Cluster): Promise<void> {
  await cluster.primary.query(SCHEMA_SQL);
  await cluster.waitForReplicas();
}

/** A fast-path client over the cluster, with probes frequent enough for tests. */
export function fastClient(
  cluster: Cluster,
  options: Partial<LaglessAdapterOptions> = {},
  extension: ReadReplicasOptions = {},
) {
  const adapter = laglessAdapter({
    primary: new PrismaPg({ connectionString: cluster.primary.url }),
    replicas: cluster.replicas.map((replica) => new PrismaPg({ connectionString: replica.url })),
    probeIntervalMs: 100,
    // A first probe (which connects, too) may be slow on a loaded machine: a replica ejected for it
    // would send the first reads to the primary and fail tests that name the serving node.
    probeTimeoutMs: 5000,
    readmission: { initialMs: 100, maxMs: 1000, jitter: 0 },
    ...options,
  });
  return { adapter, prisma: new PrismaClient({ adapter }).$extends(readReplicas(extension)) };
}

export function bareClient(url: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
}

/** Resolves when `check` passes, or rejects after `ms`. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A result extension adding a computed field, to check replica reads keep other extensions' fields. */
export const computedLabel = {
  name: 'computed',
  result: {
    user: {
      label: {
        needs: { name: true, email: true },
        compute: (u: { name: string; email: string }) => `${u.name} <${u.email}>`,
      },
    },
  },
} as const;
