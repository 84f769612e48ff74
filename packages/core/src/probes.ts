import { LaglessError } from './errors.js';
import { lsnFromPrimaryInsertPosition, parseLsn } from './lsn.js';
import { withTimeout } from './timeout.js';

/** What a node says about itself when it is admitted. */
export interface NodeIdentity {
  /** `pg_control_system().system_identifier` as decimal digits: the same on a primary and its standbys. */
  readonly systemIdentifier: string;
  readonly inRecovery: boolean;
  /** A standby's replay position; undefined before its first replay, and on a primary. */
  readonly replayLsn: bigint | undefined;
  /** A primary's WAL position (see {@link NodeProbes.walPosition}); undefined on a standby. */
  readonly walLsn: bigint | undefined;
}

/** What a standby's periodic probe tells. */
export interface ReplayState {
  readonly inRecovery: boolean;
  readonly replayLsn: bigint | undefined;
}

/**
 * Typed questions the router asks a node. The Postgres implementation below is the only place in
 * core with SQL; tests hand the router fakes that return values.
 */
export interface NodeProbes {
  identity(): Promise<NodeIdentity>;
  replay(): Promise<ReplayState>;
  /**
   * The primary's WAL insert position, lowered to a position a standby can be waited on for
   * (see `lsnFromPrimaryInsertPosition`). Fails on a node in recovery: it is no primary.
   */
  walPosition(): Promise<bigint>;
}

/** The part of a router node the probes need. */
export interface ProbeTarget {
  readonly name: string;
  query(sql: string): Promise<ReadonlyArray<Record<string, unknown>>>;
}

const IDENTITY_SQL =
  "SELECT system_identifier::text AS id, pg_is_in_recovery() AS recovery, CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_insert_lsn()::text END AS lsn, current_setting('wal_block_size') AS block FROM pg_control_system()";
const REPLAY_SQL = 'SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replay';
const WAL_POSITION_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';

function truthy(value: unknown): boolean {
  return value === true || value === 't' || value === 'true' || value === 1;
}

function lsnOrUndefined(value: unknown): bigint | undefined {
  return value === null || value === undefined ? undefined : parseLsn(String(value));
}

/** Probes over a node's `query(sql)`, each bounded by `timeoutMs`. */
export function postgresProbes(node: ProbeTarget, role: 'primary' | 'replica', timeoutMs: number): NodeProbes {
  // Read from the node at admission; 8192 unless the server was built otherwise.
  let walBlockSize = 8192;
  const firstRow = async (sql: string, what: string): Promise<Record<string, unknown>> => {
    const [row] = await withTimeout(node.query(sql), timeoutMs, node.name);
    if (!row) {
      const code = role === 'primary' ? 'PRIMARY_UNAVAILABLE' : 'REPLICA_UNAVAILABLE';
      throw new LaglessError(code, `${node.name}: the ${what} probe returned no row`, { context: { node: node.name } });
    }
    return row;
  };
  return {
    async identity() {
      const row = await firstRow(IDENTITY_SQL, 'identity');
      const inRecovery = truthy(row.recovery);
      walBlockSize = Number(row.block) || walBlockSize;
      const lsn = lsnOrUndefined(row.lsn);
      return {
        systemIdentifier: String(row.id),
        inRecovery,
        replayLsn: inRecovery ? lsn : undefined,
        walLsn: inRecovery || lsn === undefined ? undefined : lsnFromPrimaryInsertPosition(lsn, walBlockSize),
      };
    },
    async replay() {
      const row = await firstRow(REPLAY_SQL, 'replay');
      return { inRecovery: truthy(row.recovery), replayLsn: lsnOrUndefined(row.replay) };
    },
    async walPosition() {
      const row = await firstRow(WAL_POSITION_SQL, 'WAL position');
      return lsnFromPrimaryInsertPosition(parseLsn(String(row.lsn)), walBlockSize);
    },
  };
}
