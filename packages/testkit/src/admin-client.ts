import pg from 'pg';

/** How to reach one node; the shape `pg.Client` and most drivers accept. */
export interface NodeConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

export function connectionUrl(c: NodeConnection): string {
  const auth = `${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}`;
  return `postgres://${auth}@${c.host}:${c.port}/${encodeURIComponent(c.database)}`;
}

export function parseConnectionUrl(url: string): NodeConnection {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : 5432,
    user: decodeURIComponent(parsed.username || 'postgres'),
    password: decodeURIComponent(parsed.password),
    database: decodeURIComponent(parsed.pathname.replace(/^\//, '')) || 'postgres',
  };
}

export interface AdminQueryOptions {
  /** Bounds connecting and the query itself, so a frozen server cannot hang the caller. @default 10_000 */
  timeoutMs?: number;
  /** Connect to this database instead of the node's own. */
  database?: string;
}

/**
 * The part of a connection the testkit's own statements use. Declared here rather than taken from
 * `pg` so the published types need nothing a user has not installed (pg ships no types of its own).
 */
export interface AdminClient {
  query<R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: R[] }>;
}

/** Runs `fn` on a fresh connection that is always closed afterwards. */
export async function withAdminClient<T>(
  connection: NodeConnection,
  fn: (client: AdminClient) => Promise<T>,
  options: AdminQueryOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = new pg.Client({
    host: connection.host,
    port: connection.port,
    user: connection.user,
    password: connection.password,
    database: options.database ?? connection.database,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  // An error after connect (e.g. the server is killed) must not crash the process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function adminQuery<R extends Record<string, unknown>>(
  connection: NodeConnection,
  sql: string,
  params: readonly unknown[] = [],
  options: AdminQueryOptions = {},
): Promise<R[]> {
  return withAdminClient(connection, async (client) => (await client.query<R>(sql, [...params])).rows, options);
}
