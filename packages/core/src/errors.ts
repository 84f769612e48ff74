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
  /** A replica could not be checked (unreachable, authentication failed): `ready()` names it and why. */
  | 'REPLICA_UNAVAILABLE'
  | 'PRIMARY_UNAVAILABLE'
  /** The primary answered with another cluster's identity than the pinned `systemIdentifier`. */
  | 'PRIMARY_MISCONFIGURED'
  /** A replica was asked for inside a transaction, which runs on the primary. */
  | 'IN_TRANSACTION'
  /** The installed ORM changed an internal an adapter relies on: that version is not supported. */
  | 'UNSUPPORTED_VERSION'
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
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)/gi, '$1***')
    .replace(/("password"\s*:\s*)"(?:[^"\\]|\\.)*"/gi, '$1"***"');
}

export interface ShowValueOptions {
  /**
   * Show a string only by its length: for values that must stay out of logs (secrets, session
   * keys, tokens).
   * @default false
   */
  conceal?: boolean;
}

const MAX_SHOWN_CHARS = 100;

/**
 * Renders a received value for an error message, the same way in every package: strings quoted (so
 * `'1'` and `1` read differently) and cut at 100 characters, bigints with their `n`, functions by
 * name, objects as short JSON or their tag.
 */
export function showValue(value: unknown, options: ShowValueOptions = {}): string {
  if (options.conceal && (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')) {
    return `a ${typeof value}`;
  }
  switch (typeof value) {
    case 'string':
      if (options.conceal) return value.length === 0 ? 'an empty string' : `a string of ${value.length} chars`;
      return value.length > MAX_SHOWN_CHARS
        ? `${JSON.stringify(value.slice(0, MAX_SHOWN_CHARS - 3))}... (${value.length} chars)`
        : JSON.stringify(value);
    case 'function':
      return `function ${value.name || '(anonymous)'}`;
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value) && options.conceal) return `an array of ${value.length}`;
      if (value instanceof Uint8Array) return `a ${value.constructor.name} of ${value.byteLength} bytes`;
      const prototype = Object.getPrototypeOf(value);
      // A class instance (a pool, a client) is named, not dumped: its fields may hold credentials.
      if (options.conceal || (prototype !== Object.prototype && prototype !== null && !Array.isArray(value))) {
        return `an object (${value.constructor?.name ?? 'null prototype'})`;
      }
      try {
        const json = JSON.stringify(value);
        if (json !== undefined)
          return json.length > MAX_SHOWN_CHARS ? `${json.slice(0, MAX_SHOWN_CHARS - 3)}...` : json;
      } catch {
        // Cycles and bigints: fall through to the tag.
      }
      return Object.prototype.toString.call(value);
    }
    default:
      return String(value);
  }
}

/**
 * The one wording of a bad option, in every package: `Invalid option <path>: expected <what>,
 * received <value>`. `path` is where the value sits in what the user wrote (`replicas[1].weight`).
 */
export function invalidOption(
  path: string,
  expected: string,
  received: unknown,
  options: ShowValueOptions = {},
): LaglessError {
  const shown = showValue(received, options);
  return new LaglessError('INVALID_OPTION', `Invalid option ${path}: expected ${expected}, received ${shown}`, {
    context: { option: path, received: shown },
  });
}
