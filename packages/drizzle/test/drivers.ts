// One drizzle database per node for each driver the adapter supports.

import { type Cluster, startCluster } from '@lagless/testkit';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { DDL, schema } from './schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Connected {
  readonly db: Db;
  end(): Promise<void>;
}

export interface Driver {
  readonly name: 'node-postgres' | 'postgres.js';
  connect(url: string): Connected;
  /** Rows of a raw `db.execute()` result, whose shape is the driver's. */
  rows(result: unknown): Array<Record<string, unknown>>;
}

export const nodePostgres: Driver = {
  name: 'node-postgres',
  connect(url) {
    const pool = new pg.Pool({ connectionString: url, max: 8, connectionTimeoutMillis: 2000 });
    return { db: drizzlePg(pool, { schema }), end: () => pool.end().catch(() => {}) };
  },
  rows: (result) => (result as { rows: Array<Record<string, unknown>> }).rows,
};

export const postgresJs: Driver = {
  name: 'postgres.js',
  connect(url) {
    const client = postgres(url, { max: 8, connect_timeout: 2, onnotice: () => {} });
    return {
      db: drizzlePostgresJs(client, { schema }),
      end: () => client.end({ timeout: 1 }).catch(() => {}),
    };
  },
  rows: (result) => [...(result as Array<Record<string, unknown>>)],
};

export const drivers: readonly Driver[] = [nodePostgres, postgresJs];

/** A primary and two replicas with the test schema applied and replicated. */
export async function startSchemaCluster(): Promise<Cluster> {
  const cluster = await startCluster({ replicas: 2 });
  for (const statement of DDL) await cluster.primary.query(statement);
  await cluster.waitForReplicas();
  return cluster;
}
