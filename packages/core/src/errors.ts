/** Stable codes callers may switch on. */
export type LaglessErrorCode =
  | 'INVALID_OPTION'
  | 'INVALID_LSN'
  | 'INVALID_TOKEN'
  | 'NO_REPLICA_AVAILABLE'
  | 'LSN_WAIT_TIMEOUT'
  | 'QUERY_TIMEOUT'
  | 'TOKEN_STORE_UNAVAILABLE'
  | 'REPLICA_MISCONFIGURED'
  | 'PRIMARY_UNAVAILABLE'
  /** A replica was asked for inside a transaction, which runs on the primary. */
  | 'IN_TRANSACTION'
  | 'CLOSED';

/** Marks our errors across duplicate installs of this package, where `instanceof` fails. */
const BRAND = Symbol.for('lagless.error');

export interface LaglessErrorOptions {
  cause?: unknown;
  /** Structured context: node names, LSNs, timings. Never secrets. */
  context?: Record<string, unknown>;
}

export class LaglessError extends Error {
  override readonly name = 'LaglessError';
  readonly code: LaglessErrorCode;
  readonly context: Readonly<Record<string, unknown>>;
  readonly [BRAND] = true;

  constructor(code: LaglessErrorCode, message: string, options: LaglessErrorOptions = {}) {
    super(redactSecrets(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = Object.freeze({ ...options.context });
  }
}

export function isLaglessError(value: unknown, code?: LaglessErrorCode): value is LaglessError {
  if (typeof value !== 'object' || value === null || (value as Record<symbol, unknown>)[BRAND] !== true) {
    return false;
  }
  return code === undefined || (value as LaglessError).code === code;
}

/**
 * Hides passwords in anything that looks like a connection string: URLs with credentials
 * (`postgres://user:secret@host`) and libpq keyword strings (`password=secret`).
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)/gi, '$1***');
}

/** Renders a received value for an error message: quoted strings, so `'1'` and `1` read differently. */
export function showValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'function':
      return `function ${value.name || '(anonymous)'}`;
    case 'bigint':
      return `${value}n`;
    case 'object': {
      if (value === null) return 'null';
      try {
        const json = JSON.stringify(value);
        if (json !== undefined) return json.length > 100 ? `${json.slice(0, 97)}...` : json;
      } catch {
        // Cycles and bigints: fall through to the tag.
      }
      return Object.prototype.toString.call(value);
    }
    default:
      return String(value);
  }
}
