import { LaglessError, redactSecrets } from './errors.js';
import { assertKey, assertRaiseArguments, describeValue } from './memory-token-store.js';
import type { TokenStore } from './token-store.js';

/** The subset of an ioredis client (or Cluster) we use. */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

export interface RedisTokenStoreOptions {
  /** Prepended to every key, so several applications (or environments) can share one Redis. @default 'lagless:lsn:' */
  prefix?: string;
  /**
   * Bound on every Redis call, in milliseconds. Past it the call rejects with
   * `TOKEN_STORE_UNAVAILABLE` and the router reads from the primary instead.
   * @default 250
   */
  timeoutMs?: number;
}

const DEFAULT_PREFIX = 'lagless:lsn:';
const DEFAULT_TIMEOUT_MS = 250;
// setTimeout fires at once for delays beyond a signed 32-bit integer.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const HEX_DIGITS = 16;
const STORED_LSN = /^[0-9A-Fa-f]{16}$/;

/**
 * Max-merge in one round trip, atomic because Redis runs a script without interleaving others.
 *
 * LSNs travel as 16 hex digits because Lua numbers are doubles and would round 64-bit LSNs. They
 * are compared as two 8-digit halves, each exact in a double, rather than with Lua's `<`, which
 * compares strings with strcoll and so depends on the server's locale. A value that does not
 * parse (written by something else) is overwritten rather than trusted.
 */
const RAISE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
local wanted = ARGV[1]
if current and string.len(current) == 16 then
  local curHigh = tonumber(string.sub(current, 1, 8), 16)
  local curLow = tonumber(string.sub(current, 9, 16), 16)
  local newHigh = tonumber(string.sub(wanted, 1, 8), 16)
  local newLow = tonumber(string.sub(wanted, 9, 16), 16)
  if curHigh and curLow and (curHigh > newHigh or (curHigh == newHigh and curLow >= newLow)) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return current
  end
end
redis.call('SET', KEYS[1], wanted, 'PX', ARGV[2])
return wanted
`;

interface ResolvedOptions {
  readonly prefix: string;
  readonly timeoutMs: number;
}

/**
 * A token store in Redis, shared by every instance of an application, with the max-merge done
 * atomically on the Redis side (one `EVAL` per raise).
 *
 * The client stays yours: the store never connects, retries or closes it. Every call is raced
 * against `timeoutMs`, and a timeout or any Redis error rejects with `TOKEN_STORE_UNAVAILABLE`,
 * upon which the router reads from the primary: never stale, never an outage. By default ioredis
 * queues commands while disconnected and retries them; the timeout is what bounds that wait. To
 * fail even sooner while Redis is down, create the client with `enableOfflineQueue: false` and a
 * small `maxRetriesPerRequest`. A raise that timed out in a queueing client may still reach Redis
 * once it reconnects; that is harmless, because a raise can only move a token forwards.
 *
 * Each call touches one key, so an ioredis `Cluster` works as well. `get` does not refresh a key's
 * time to live; `raise` always does, also when the stored LSN was already higher.
 *
 * @example
 * import { Redis } from 'ioredis';
 * const store = redisTokenStore(new Redis(process.env.REDIS_URL), { timeoutMs: 100 });
 */
export function redisTokenStore(redis: RedisLike, options: RedisTokenStoreOptions = {}): TokenStore {
  if (
    typeof redis !== 'object' ||
    redis === null ||
    typeof redis.get !== 'function' ||
    typeof redis.eval !== 'function'
  ) {
    throw new LaglessError(
      'INVALID_OPTION',
      `Invalid redis client: expected an object with get() and eval() (an ioredis Redis or Cluster), received ${describeValue(redis)}`,
    );
  }
  return new RedisTokenStore(redis, resolveOptions(options));
}

function resolveOptions(options: RedisTokenStoreOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new LaglessError('INVALID_OPTION', `Invalid options: expected an object, received ${describeValue(options)}`);
  }
  const { prefix = DEFAULT_PREFIX, timeoutMs = DEFAULT_TIMEOUT_MS } = options;
  if (typeof prefix !== 'string') {
    throw new LaglessError(
      'INVALID_OPTION',
      `Invalid option prefix: expected a string, received ${describeValue(prefix)}`,
    );
  }
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new LaglessError(
      'INVALID_OPTION',
      `Invalid option timeoutMs: expected a positive number of milliseconds up to ${MAX_TIMEOUT_MS}, received ${describeValue(timeoutMs)}`,
    );
  }
  return Object.freeze({ prefix, timeoutMs });
}

class RedisTokenStore implements TokenStore {
  readonly #redis: RedisLike;
  readonly #config: ResolvedOptions;

  constructor(redis: RedisLike, config: ResolvedOptions) {
    this.#redis = redis;
    this.#config = config;
  }

  async get(key: string): Promise<bigint | undefined> {
    assertKey(key);
    const stored = await this.#call('get', () => this.#redis.get(this.#config.prefix + key));
    if (stored === null) return undefined;
    return this.#parse('get', stored);
  }

  async raise(key: string, lsn: bigint, ttlMs: number): Promise<bigint> {
    assertRaiseArguments(key, lsn, ttlMs);
    // PX takes whole milliseconds; rounding up never shortens the TTL, and the cap keeps the
    // argument an integer Redis accepts (about 285,000 years).
    const px = Math.min(Math.ceil(ttlMs), Number.MAX_SAFE_INTEGER);
    const stored = await this.#call('raise', () =>
      this.#redis.eval(RAISE_SCRIPT, 1, this.#config.prefix + key, formatStored(lsn), px),
    );
    return this.#parse('raise', stored);
  }

  #parse(operation: string, stored: unknown): bigint {
    if (typeof stored !== 'string' || !STORED_LSN.test(stored)) {
      // Something other than lagless wrote this key. Failing (and so reading from the primary) is
      // the only answer that cannot be stale.
      throw new LaglessError(
        'TOKEN_STORE_UNAVAILABLE',
        `Token store ${operation} failed: Redis returned ${describeValue(stored)}, not a ${HEX_DIGITS}-digit hex LSN`,
        { context: { operation, prefix: this.#config.prefix } },
      );
    }
    return BigInt(`0x${stored}`);
  }

  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const { timeoutMs } = this.#config;
    let timeout: LaglessError | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      // A client may throw synchronously (a fake, or ioredis on bad arguments): treat it like a rejection.
      const pending = Promise.resolve().then(run);
      // When the timeout wins, the command may still fail later, with nobody awaiting it.
      pending.catch(() => {});
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timeout = new LaglessError(
            'TOKEN_STORE_UNAVAILABLE',
            `Token store ${operation} timed out after ${timeoutMs} ms`,
            { context: { operation, timeoutMs } },
          );
          reject(timeout);
        }, timeoutMs);
        // A token lookup must not keep the process alive on its own.
        timer.unref?.();
      });
      return await Promise.race([pending, timedOut]);
    } catch (error) {
      if (timeout !== undefined && error === timeout) throw error;
      throw new LaglessError(
        'TOKEN_STORE_UNAVAILABLE',
        `Token store ${operation} failed: ${redactSecrets(error instanceof Error ? error.message : String(error))}`,
        { cause: error, context: { operation, timeoutMs } },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

function formatStored(lsn: bigint): string {
  return lsn.toString(16).toUpperCase().padStart(HEX_DIGITS, '0');
}
