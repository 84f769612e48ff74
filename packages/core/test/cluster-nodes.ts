// Test helpers: router nodes over node-postgres pools pointed at a testkit cluster.
import type { Cluster } from '@lagless/testkit';
import pg from 'pg';
import type { RouterNode } from '../src/index.js';

export interface PoolNode extends RouterNode<pg.Pool> {
  readonly port: number;
}

export function poolNode(name: string, url: string, options: pg.PoolConfig = {}): PoolNode {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 2000, ...options });
  // Idle clients of a killed server emit errors; the router learns of failures from queries.
  pool.on('error', () => {});
  return {
    name,
    port: Number(new URL(url).port),
    client: pool,
    query: async (sql) => (await pool.query(sql)).rows,
  };
}

export function clusterNodes(cluster: Cluster, options: pg.PoolConfig = {}) {
  return {
    primary: poolNode('primary', cluster.primary.url, options),
    replicas: cluster.replicas.map((r) => poolNode(r.name, r.url, options)),
  };
}

export async function endNodes(...nodes: PoolNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.client.end().catch(() => {})));
}

/** The port of the server that actually ran the statement: routing is judged by the server, not by us. */
export async function servedBy(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port');
  return Number(rows[0]?.port);
}
