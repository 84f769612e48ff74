import { redactSecrets } from './errors.js';

/**
 * Telling a node that cannot be reached apart from a query that failed on it: the first is retried
 * elsewhere and ejects the node, the second reaches the caller unchanged.
 */

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOTCONN',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_PREMATURE_CLOSE',
  // postgres.js
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  // Prisma (P1001 can't reach, P1002 timed out, P1017 server closed the connection, P2024 pool timeout)
  'P1001',
  'P1002',
  'P1017',
  'P2024',
  // ours: a replica read or probe that outlived its timeout
  'QUERY_TIMEOUT',
]);

const SQLSTATES = new Set([
  '57P01', // admin_shutdown: the server is shutting down
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up, or in recovery without hot standby
  '53300', // too_many_connections: this node cannot take us now, another may
]);

const MESSAGES =
  /connection terminated|connection ended|server closed the connection|connection refused|socket hang up|timeout exceeded when trying to connect|terminating connection due to administrator command|the database system is (starting up|shutting down|in recovery mode)|can't reach database server|connection (is )?closed|client has encountered a connection error/i;

/** Prisma driver adapters wrap driver errors as `{ kind, code?, ... }`; these kinds mean "unreachable". */
const ADAPTER_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);

function* errorChain(error: unknown): Generator<Record<string, unknown>> {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && typeof current === 'object' && current !== null; depth++) {
    const record = current as Record<string, unknown>;
    yield record;
    current = record.cause ?? record.originalError ?? record.error;
  }
}

function sqlState(record: Record<string, unknown>): string | undefined {
  const code = record.code ?? record.originalCode;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True when `error` says the node could not be reached or dropped the connection. */
export function isConnectionLevelError(error: unknown): boolean {
  for (const record of errorChain(error)) {
    const code = record.code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('08'))) return true;
    const state = sqlState(record);
    if (state && (SQLSTATES.has(state) || state.startsWith('08'))) return true;
    if (typeof record.kind === 'string' && ADAPTER_KINDS.has(record.kind)) return true;
    if (typeof record.message === 'string' && MESSAGES.test(record.message)) return true;
  }
  return false;
}

/**
 * A standby cancels a read whose snapshot conflicts with WAL it must replay. The replica is healthy
 * and the query is fine: run it elsewhere, without ejecting anyone.
 */
export function isRecoveryConflict(error: unknown): boolean {
  for (const record of errorChain(error)) {
    const state = sqlState(record);
    if (
      (state === '40001' || state === '40P01') &&
      typeof record.message === 'string' &&
      /conflict with recovery/i.test(record.message)
    ) {
      return true;
    }
  }
  return false;
}

/** What went wrong on a node, in one line: the server's or the driver's code, and its message. */
export interface FailureDescription {
  /** SQLSTATE (`28P01`), errno (`ECONNREFUSED`), or driver code (`P1001`); undefined when none is given. */
  readonly code: string | undefined;
  /** The most specific message found, passwords redacted. */
  readonly message: string;
}

/**
 * Finds the code and message worth showing in an error chain: ORMs wrap the driver's error (Prisma's
 * driver adapters keep it as `originalCode` / `originalMessage`), and a wrapper's own message often
 * says only "AuthenticationFailed".
 */
export function describeFailure(error: unknown): FailureDescription {
  let code: string | undefined;
  let message: string | undefined;
  for (const record of errorChain(error)) {
    const own =
      sqlState(record) ?? (typeof record.code === 'string' && record.code.length > 0 ? record.code : undefined);
    if (code === undefined && own !== undefined) code = own;
    const text =
      typeof record.originalMessage === 'string'
        ? record.originalMessage
        : typeof record.message === 'string' && record.message.length > 0
          ? record.message
          : undefined;
    // The innermost message with a code is the server's own words; keep looking until one has both.
    if (text !== undefined && (message === undefined || own !== undefined)) message = text;
    if (code !== undefined && own !== undefined && message === text) break;
  }
  if (message === undefined) message = typeof error === 'string' ? error : String(error);
  // Prisma's adapter errors without a server message say only their kind: add where, and use the
  // kind as the code.
  const adapterError = [...errorChain(error)].find((record) => typeof record.kind === 'string');
  if (adapterError && message === adapterError.kind) {
    const { host, port } = adapterError;
    if (typeof host === 'string') message = `${message} (${host}${port === undefined ? '' : `:${String(port)}`})`;
    code ??= adapterError.kind as string;
  }
  return { code, message: redactSecrets(message.split('\n', 1)[0] ?? message) };
}

// Failures to open a connection: a statement that meets one was never sent.
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'P1001']);
const NOT_CONNECTED_STATES = new Set(['57P03', '28P01', '28000', '53300', '3D000']);
// Prisma driver adapters' names for the same failures.
const NOT_CONNECTED_KINDS = new Set(['DatabaseNotReachable', 'AuthenticationFailed', 'DatabaseDoesNotExist']);

/**
 * True when `error` says the connection was never established, so the statement cannot have run:
 * a write that failed so need not raise anyone's required position (which would need the primary
 * that just refused us).
 */
export function isNotConnectedError(error: unknown): boolean {
  for (const record of errorChain(error)) {
    if (typeof record.code === 'string' && NOT_CONNECTED_CODES.has(record.code)) return true;
    const state = sqlState(record);
    if (state !== undefined && NOT_CONNECTED_STATES.has(state)) return true;
    if (typeof record.kind === 'string' && NOT_CONNECTED_KINDS.has(record.kind)) return true;
  }
  return false;
}
