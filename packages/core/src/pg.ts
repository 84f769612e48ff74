import { createRequire } from 'node:module';
import { invalidOption } from './errors.js';
import type { RouterNode } from './options.js';

/** The part of a node-postgres `Pool` a node needs (any pg-compatible pool will do). */
export interface PgPoolLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  end(): Promise<void>;
}

/** What `new pg.Pool(config)` takes; passed through as given. */
export interface PgPoolConfig {
  connectionString?: string;
  [option: string]: unknown;
}

export interface PgNodeOptions {
  /** Share of reads under the `weighted` balancer. @default 1 */
  weight?: number;
  /** Where the node runs (see the router's `zone`). @default undefined */
  zone?: string;
}

/** A router node over a node-postgres pool. */
export interface PgNode<P extends PgPoolLike = PgPoolLike> extends RouterNode<P> {
  readonly pool: P;
  /** Ends the pool: call it after `router.close()`. */
  end(): Promise<void>;
}

/**
 * A router node over node-postgres: give it a `pg.Pool`, a pool config, or a connection string.
 * The pool gets an `'error'` listener at once, so an idle connection dying with its server (a
 * replica killed, a failover) never crashes the process as an unheard `'error'` does; the router
 * that takes the node hears of it, and ejects that replica before a read trips on it.
 *
 * @example
 * const router = createRouter({ primary: pgNode('primary', PRIMARY_URL), replicas: [pgNode('replica1', REPLICA_URL)] })
 * // teardown: await router.close(); then end every node's pool
 */
export function pgNode<P extends PgPoolLike = PgPoolLike>(
  name: string,
  poolOrConfig: P | PgPoolConfig | string,
  options: PgNodeOptions = {},
): PgNode<P> {
  if (typeof name !== 'string' || name.length === 0) throw invalidOption('pgNode(name)', 'a non-empty string', name);
  const pool = toPool<P>(poolOrConfig);
  let report: ((error: unknown) => void) | undefined;
  // Heard at once: an unheard pool 'error' is an uncaught exception.
  pool.on('error', (error) => report?.(error));
  return {
    name,
    client: pool,
    pool,
    ...(options.weight === undefined ? {} : { weight: options.weight }),
    ...(options.zone === undefined ? {} : { zone: options.zone }),
    query: async (sql) => (await pool.query(sql)).rows,
    attach(reporter) {
      report = reporter;
    },
    end: () => pool.end(),
  };
}

function isPool(value: unknown): value is PgPoolLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as PgPoolLike).query === 'function' &&
    typeof (value as PgPoolLike).on === 'function'
  );
}

function toPool<P extends PgPoolLike>(poolOrConfig: P | PgPoolConfig | string): P {
  if (isPool(poolOrConfig)) return poolOrConfig as P;
  const config = typeof poolOrConfig === 'string' ? { connectionString: poolOrConfig } : poolOrConfig;
  if (typeof config !== 'object' || config === null) {
    throw invalidOption('pgNode(name, pool)', 'a pg Pool, a pool config or a connection string', poolOrConfig, {
      conceal: true,
    });
  }
  // Loaded only here: a caller handing us a pool needs no `pg` of ours.
  const pg = createRequire(import.meta.url)('pg') as { Pool: new (config: PgPoolConfig) => PgPoolLike };
  return new pg.Pool(config) as P;
}
