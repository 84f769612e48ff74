import { createHmac, timingSafeEqual } from 'node:crypto';
import { invalidOption, LaglessError, showValue } from './errors.js';
import { formatLsn, MAX_LSN } from './lsn.js';

/** What a consistency token carries. */
export interface TokenPayload {
  /** The WAL position a read presenting this token must see. */
  readonly lsn: bigint;
  /** The cluster's `system_identifier` (a uint64) as decimal digits, e.g. from `pg_control_system()`. */
  readonly systemIdentifier: string;
}

/** Options for {@link decodeToken}. */
export interface DecodeTokenOptions {
  /** The `system_identifier` of the cluster this process routes to; tokens from any other are refused. */
  systemIdentifier: string;
  /**
   * The HMAC secret tokens are signed with (at least 16 bytes each), or a list of them while a
   * secret is being rotated: a token signed with any of them verifies. When set, unsigned tokens
   * are refused; when unset, signed tokens are refused, since they cannot be verified.
   * @default undefined
   */
  secret?: TokenSecret | undefined;
  /**
   * The primary's latest known WAL position. A token claiming a later position is impossible
   * (forged, or from before a restore) and is refused instead of making reads wait for it.
   * @default undefined (not checked)
   */
  primaryLsn?: bigint | undefined;
}

/** An HMAC key for tokens, or a list for rotation: the first signs, every one verifies. */
export type TokenSecret = string | Uint8Array | ReadonlyArray<string | Uint8Array>;

/** Why {@link decodeToken} refused a token; found in the error's `context.reason`. */
export type TokenRejectionReason =
  | 'malformed'
  | 'unsupported-version'
  | 'foreign-cluster'
  | 'unsigned'
  | 'bad-signature'
  | 'signed-without-secret'
  | 'ahead-of-primary';

const VERSION = 'l1';
/** Longer than any token we write: a longer one is refused before anything else is looked at. */
export const MAX_TOKEN_CHARS = 256;
const MAX_ECHOED_CHARS = 24;
const MIN_SECRET_BYTES = 16;
const MAX_SYSTEM_IDENTIFIER = 18_446_744_073_709_551_615n;

// Exactly what encodeToken writes, so every accepted token has one canonical spelling.
const TOKEN_L1 = /^l1\.([0-9A-F]{16})\.(0|[1-9][0-9]{0,19})(?:\.([A-Za-z0-9_-]+))?$/;
const TOKEN_CHARS = /^[A-Za-z0-9._-]+$/;
// Tells a token from a future (or past) format, which deserves its own reason, from garbage.
const VERSION_TAG = /^l[1-9][0-9]{0,3}$/;
const SYSTEM_IDENTIFIER = /^(?:0|[1-9][0-9]{0,19})$/;

/**
 * Encodes a consistency token: `l1.<LSN as 16 hex digits>.<system identifier>`, followed by
 * `.<HMAC-SHA256 of everything before it, base64url>` when `secret` is given. The result only
 * uses `[A-Za-z0-9._-]`, so it can travel in headers, cookies and URLs unescaped.
 *
 * @param secret signs the token; at least 16 bytes (a string counts its UTF-8 bytes). With a
 *   list, the first one signs.
 * @throws {LaglessError} `INVALID_LSN` for an LSN outside `0..2^64-1`; `INVALID_OPTION` for a bad
 *   system identifier or secret.
 */
export function encodeToken(payload: TokenPayload, secret?: TokenSecret): string {
  const key = checkSecrets(secret, 'secret')[0];
  if (typeof payload !== 'object' || payload === null) {
    throw invalidOption('payload', 'an object { lsn, systemIdentifier }', payload);
  }
  const { lsn, systemIdentifier } = payload;
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) {
    throw new LaglessError(
      'INVALID_LSN',
      `Cannot encode a token: lsn must be a bigint from 0 to 2^64-1, received ${typeof lsn === 'bigint' ? (lsn < 0n ? 'a negative bigint' : 'a bigint above 2^64-1') : typeof lsn}`,
    );
  }
  checkSystemIdentifier(systemIdentifier, 'systemIdentifier');
  const body = `${VERSION}.${lsn.toString(16).toUpperCase().padStart(16, '0')}.${systemIdentifier}`;
  return key === undefined ? body : `${body}.${sign(body, key)}`;
}

/**
 * Decodes and verifies a consistency token from an untrusted source (a header, a cookie, a
 * store). Never returns a token it could not fully verify.
 *
 * The signature is checked before anything the token claims, so an unauthenticated token's
 * cluster or position is never acted upon.
 *
 * @throws {LaglessError} `INVALID_TOKEN` with `context.reason` a {@link TokenRejectionReason};
 *   `INVALID_OPTION` when the options themselves are wrong.
 */
export function decodeToken(token: unknown, options: DecodeTokenOptions): TokenPayload {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'an object { systemIdentifier, secret?, primaryLsn? }', options);
  }
  const keys = checkSecrets(options.secret, 'secret');
  checkSystemIdentifier(options.systemIdentifier, 'systemIdentifier');
  const { primaryLsn } = options;
  if (primaryLsn !== undefined && (typeof primaryLsn !== 'bigint' || primaryLsn < 0n || primaryLsn > MAX_LSN)) {
    throw invalidOption('primaryLsn', 'a bigint from 0 to 2^64-1', primaryLsn);
  }

  // Length first: nothing else is looked at in an oversized value.
  const match = typeof token === 'string' && token.length <= MAX_TOKEN_CHARS ? TOKEN_L1.exec(token) : null;
  if (match === null) {
    throw diagnose(token);
  }
  const text = token as string;
  const lsnHex = match[1] as string;
  const systemIdentifier = match[2] as string;
  const signature = match[3];
  if (systemIdentifier.length === 20 && BigInt(systemIdentifier) > MAX_SYSTEM_IDENTIFIER) {
    throw reject(text, 'malformed', 'its system identifier is larger than a uint64');
  }

  if (keys.length === 0) {
    if (signature !== undefined) {
      throw reject(text, 'signed-without-secret', 'it is signed but no secret is configured to verify it');
    }
  } else if (signature === undefined) {
    throw reject(text, 'unsigned', 'it is unsigned and a secret is configured');
  } else {
    // The signed part is the token up to the last '.', i.e. everything but `.<signature>`.
    const body = text.slice(0, text.length - signature.length - 1);
    const received = Buffer.from(signature, 'latin1');
    // Lengths are public (a SHA-256 MAC always has 43 base64url chars); only the contents need
    // a constant-time comparison.
    const verifies = (key: string | Uint8Array): boolean => {
      const expected = Buffer.from(sign(body, key), 'latin1');
      return received.length === expected.length && timingSafeEqual(received, expected);
    };
    if (!keys.some(verifies)) {
      throw reject(text, 'bad-signature', 'its signature does not match');
    }
  }

  if (systemIdentifier !== options.systemIdentifier) {
    throw reject(text, 'foreign-cluster', `it belongs to cluster ${systemIdentifier}`, {
      tokenSystemIdentifier: systemIdentifier,
      systemIdentifier: options.systemIdentifier,
    });
  }
  const lsn = BigInt(`0x${lsnHex}`);
  if (primaryLsn !== undefined && lsn > primaryLsn) {
    throw reject(text, 'ahead-of-primary', 'its LSN is ahead of the primary', {
      tokenLsn: formatLsn(lsn),
      primaryLsn: formatLsn(primaryLsn),
    });
  }
  return { lsn, systemIdentifier };
}

/**
 * Validates a secret option (one secret, or a list for rotation) and returns private copies of
 * their bytes (UTF-8 for a string), the signing one first; an empty list when none is given.
 *
 * @throws {LaglessError} `INVALID_OPTION` unless `secret` is undefined, or a string or Uint8Array
 *   of at least 16 bytes, or a non-empty list of them. The message names the type and length
 *   received, never the value.
 */
export function validateSecret(secret: unknown, option = 'tokenSecret'): readonly Uint8Array[] {
  // Copies, so a caller reusing its buffer cannot change a key behind our back.
  return Object.freeze(
    checkSecrets(secret, option).map((key) =>
      typeof key === 'string' ? new TextEncoder().encode(key) : new Uint8Array(key),
    ),
  );
}

/** Validates without copying: encode and decode run per request. */
function checkSecrets(secret: unknown, option: string): ReadonlyArray<string | Uint8Array> {
  if (secret === undefined) return [];
  if (Array.isArray(secret)) {
    if (secret.length === 0) throw invalidOption(option, 'a secret or a non-empty list of secrets', secret);
    return secret.map((one, i) => checkSecret(one, `${option}[${i}]`));
  }
  return [checkSecret(secret, option)];
}

function checkSecret(secret: unknown, option: string): string | Uint8Array {
  const bytes =
    typeof secret === 'string'
      ? Buffer.byteLength(secret, 'utf8')
      : secret instanceof Uint8Array
        ? secret.byteLength
        : -1;
  if (bytes >= MIN_SECRET_BYTES) return secret as string | Uint8Array;
  const received = typeof secret === 'string' ? `a string of ${bytes} bytes` : showValue(secret, { conceal: true });
  throw new LaglessError(
    'INVALID_OPTION',
    `Invalid option ${option}: expected a string or Uint8Array of at least ${MIN_SECRET_BYTES} bytes, received ${received}`,
    { context: { option } },
  );
}

function checkSystemIdentifier(value: unknown, option: string): asserts value is string {
  if (
    typeof value === 'string' &&
    SYSTEM_IDENTIFIER.test(value) &&
    (value.length < 20 || BigInt(value) <= MAX_SYSTEM_IDENTIFIER)
  ) {
    return;
  }
  throw invalidOption(option, 'the decimal digits of a uint64 system identifier', value);
}

function sign(body: string, key: string | Uint8Array): string {
  return createHmac('sha256', key).update(body, 'latin1').digest('base64url');
}

/** Sorts a token that failed the fast path into the most useful reason. */
function diagnose(token: unknown): LaglessError {
  if (typeof token !== 'string') {
    return reject(undefined, 'malformed', `expected a string, received ${showValue(token, { conceal: true })}`);
  }
  if (token.length > MAX_TOKEN_CHARS) {
    return reject(token, 'malformed', `it is ${token.length} characters long (at most ${MAX_TOKEN_CHARS})`);
  }
  if (token.length === 0) {
    return reject(token, 'malformed', 'it is empty');
  }
  if (!TOKEN_CHARS.test(token)) {
    return reject(token, 'malformed', 'it contains characters a token never has');
  }
  const dot = token.indexOf('.');
  const version = dot === -1 ? token : token.slice(0, dot);
  if (version !== VERSION && VERSION_TAG.test(version)) {
    return reject(token, 'unsupported-version', `version ${version} is not supported (expected ${VERSION})`);
  }
  return reject(token, 'malformed', 'it does not have the structure of a token');
}

function reject(
  token: string | undefined,
  reason: TokenRejectionReason,
  why: string,
  context: Record<string, unknown> = {},
): LaglessError {
  // Only a prefix is echoed: enough to recognise the token in logs without copying a replayable
  // credential into them.
  const shown =
    token === undefined
      ? ''
      : ` ${JSON.stringify(token.length > MAX_ECHOED_CHARS ? `${token.slice(0, MAX_ECHOED_CHARS)}…` : token)}`;
  return new LaglessError('INVALID_TOKEN', `Rejected consistency token${shown}: ${why}`, {
    context: { reason, ...context },
  });
}
