import { invalidOption, LaglessError, redactSecrets, showValue } from './errors.js';
import { assertKey, assertRaiseArguments } from './memory-token-store.js';
import type { TokenLookup, TokenStore } from './token-store.js';

/** The subset of an ioredis client (or Cluster) we use; `config` only for the set-up check. */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  config?(subcommand: 'GET', parameter: string): Promise<unknown>;
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
  /**
   * Notice when Redis lost data (restarted empty, flushed, failed over to an empty node) and make
   * keys it no longer knows require the primary's position at that moment, instead of trusting
   * their absence. Costs nothing per call (the check rides in the same script); turn it off only
   * to measure what it prevents.
   * @default true
   */
  detectLoss?: boolean;
  /**
   * Keys are spread over this many hash tags, each with its own loss marker in the same Redis
   * Cluster slot (no cross-slot command is ever sent). More spreads load over more cluster nodes.
   * @default 256
   */
  shards?: number;
}

const DEFAULT_PREFIX = 'lagless:lsn:';
const DEFAULT_TIMEOUT_MS = 250;
const DEFAULT_SHARDS = 256;
const MAX_SHARDS = 16_384;
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

/**
 * A key's LSN and its shard's loss marker, read together. The marker (no TTL) holds the Redis time
 * it was created, which names the loss (`<seconds>.<microseconds>`), and later the primary's
 * position when that happened (`...:<hex>`). A
 * missing marker means this shard's data was lost, or was never written: either way nothing
 * absent here can be trusted, so it is recreated and the caller told. Both keys share a hash tag,
 * hence a cluster slot. A raise never creates the marker, or a loss would go unseen.
 */
const LOOKUP_SCRIPT = `
local value = redis.call('GET', KEYS[1])
local marker = redis.call('GET', KEYS[2])
local time = redis.call('TIME')
local created = 0
if not marker then
  marker = time[1] .. '.' .. time[2]
  created = 1
  redis.call('SET', KEYS[2], marker)
end
return {value or '', marker, time[1], created}
`;

/** Sets a marker's floor once, if it still is the marker of the loss the caller saw. */
const RECORD_FLOOR_SCRIPT = `
local marker = redis.call('GET', KEYS[1])
if marker == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
  return 1
end
return 0
`;

const MARKER = /^(([0-9]+)\.[0-9]+)(?::([0-9A-F]{16}))?$/;

interface ResolvedOptions {
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly detectLoss: boolean;
  readonly shards: number;
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
/** A token store in Redis: it always answers lookups, with the loss it noticed if any. */
export interface RedisTokenStore extends TokenStore {
  get(key: string, ttlMs?: number): Promise<TokenLookup>;
  recordLossFloor(key: string, epoch: string, floor: bigint): Promise<void>;
  check(): Promise<string[]>;
}

export function redisTokenStore(redis: RedisLike, options: RedisTokenStoreOptions = {}): RedisTokenStore {
  if (
    typeof redis !== 'object' ||
    redis === null ||
    typeof redis.get !== 'function' ||
    typeof redis.eval !== 'function'
  ) {
    throw invalidOption('redis', 'an ioredis Redis or Cluster (an object with get() and eval())', redis, {
      conceal: true,
    });
  }
  return new RedisStore(redis, resolveOptions(options));
}

function resolveOptions(options: RedisTokenStoreOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'an object', options);
  const {
    prefix = DEFAULT_PREFIX,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    detectLoss = true,
    shards = DEFAULT_SHARDS,
  } = options;
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    // A brace in the prefix would become the hash tag and put every key in one cluster slot.
    throw invalidOption('prefix', 'a string without { or }', prefix);
  }
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
    throw invalidOption('timeoutMs', `a positive number of milliseconds up to ${MAX_TIMEOUT_MS}`, timeoutMs);
  }
  if (typeof detectLoss !== 'boolean') throw invalidOption('detectLoss', 'a boolean', detectLoss);
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
    throw invalidOption('shards', `an integer from 1 to ${MAX_SHARDS}`, shards);
  }
  return Object.freeze({ prefix, timeoutMs, detectLoss, shards });
}

/** FNV-1a over the key's UTF-16 code units: cheap, and stable across processes and versions. */
function shardOf(key: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}

class RedisStore implements RedisTokenStore {
  readonly #redis: RedisLike;
  readonly #config: ResolvedOptions;
  /** The marker each shard had when this instance last read it: a different one is a certain loss. */
  readonly #markersSeen = new Map<number, string>();

  constructor(redis: RedisLike, config: ResolvedOptions) {
    this.#redis = redis;
    this.#config = config;
  }

  #tag(key: string): { shard: number; tag: string } {
    const shard = shardOf(key, this.#config.shards);
    return { shard, tag: `${this.#config.prefix}{${shard}}` };
  }

  async get(key: string, ttlMs = 3_600_000): Promise<TokenLookup> {
    assertKey(key);
    const { shard, tag } = this.#tag(key);
    const dataKey = `${tag}k:${key}`;
    if (!this.#config.detectLoss) {
      const stored = await this.#call('get', () => this.#redis.get(dataKey));
      return { lsn: stored === null ? undefined : this.#parse('get', stored) };
    }
    const reply = await this.#call('get', () => this.#redis.eval(LOOKUP_SCRIPT, 2, dataKey, `${tag}epoch`));
    if (!Array.isArray(reply) || reply.length !== 4) throw this.#unexpected('get', reply);
    const [stored, marker, now, created] = reply as unknown[];
    const lsn = stored === '' ? undefined : this.#parse('get', stored);
    const match = typeof marker === 'string' ? MARKER.exec(marker) : null;
    if (!match) throw this.#unexpected('get', marker);
    const epoch = match[1] as string;
    const seen = this.#markersSeen.get(shard);
    this.#markersSeen.set(shard, epoch);
    const ageMs = (Number(now) - Number(match[2])) * 1000;
    // Every key the loss could have dropped has expired by now: the marker no longer matters.
    if (created !== 1 && ageMs > ttlMs) return { lsn };
    return {
      lsn,
      loss: {
        epoch,
        floor: match[3] === undefined ? undefined : BigInt(`0x${match[3]}`),
        // This instance read the shard before the loss: certainly a loss, not a first use.
        confirmed: seen !== undefined && seen !== epoch,
      },
    };
  }

  async raise(key: string, lsn: bigint, ttlMs: number): Promise<bigint> {
    assertRaiseArguments(key, lsn, ttlMs);
    // PX takes whole milliseconds; rounding up never shortens the TTL, and the cap keeps the
    // argument an integer Redis accepts (about 285,000 years).
    const px = Math.min(Math.ceil(ttlMs), Number.MAX_SAFE_INTEGER);
    const stored = await this.#call('raise', () =>
      this.#redis.eval(RAISE_SCRIPT, 1, `${this.#tag(key).tag}k:${key}`, formatStored(lsn), px),
    );
    return this.#parse('raise', stored);
  }

  async recordLossFloor(key: string, epoch: string, floor: bigint): Promise<void> {
    assertRaiseArguments(key, floor, 1);
    await this.#call('raise', () =>
      this.#redis.eval(RECORD_FLOOR_SCRIPT, 1, `${this.#tag(key).tag}epoch`, epoch, formatStored(floor)),
    );
  }

  async check(): Promise<string[]> {
    if (typeof this.#redis.config !== 'function') return [];
    const setting = async (name: string): Promise<string | undefined> => {
      const reply = await this.#call('check', () =>
        (this.#redis.config as NonNullable<RedisLike['config']>)('GET', name),
      );
      // RESP2 replies [name, value]; ioredis 6 with `replyMapping: 'resp3'` replies { name: value }.
      const value = Array.isArray(reply)
        ? reply[1]
        : typeof reply === 'object' && reply !== null
          ? (reply as Record<string, unknown>)[name]
          : undefined;
      return typeof value === 'string' ? value : undefined;
    };
    const policy = await setting('maxmemory-policy');
    if (policy?.startsWith('allkeys')) {
      return [
        `maxmemory-policy is ${policy}: under memory pressure Redis may evict any key, tokens and loss markers alike; use noeviction (or volatile-* with memory to spare)`,
      ];
    }
    if (policy?.startsWith('volatile') && Number(await setting('maxmemory')) > 0) {
      return [
        `maxmemory-policy is ${policy} with a maxmemory set: under memory pressure Redis may evict tokens (they have a TTL) and a session may then read older data than it wrote; use noeviction`,
      ];
    }
    return [];
  }

  #unexpected(operation: string, reply: unknown): LaglessError {
    return new LaglessError(
      'TOKEN_STORE_UNAVAILABLE',
      `Token store ${operation} failed: Redis returned ${showValue(reply, { conceal: true })}, which lagless did not write`,
      { context: { operation, prefix: this.#config.prefix } },
    );
  }

  #parse(operation: string, stored: unknown): bigint {
    // Something other than lagless wrote this key. Failing (and so reading from the primary) is
    // the only answer that cannot be stale.
    if (typeof stored !== 'string' || !STORED_LSN.test(stored)) throw this.#unexpected(operation, stored);
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
