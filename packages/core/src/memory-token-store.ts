import { LaglessError } from './errors.js';
import { MAX_LSN } from './lsn.js';
import type { TokenStore } from './token-store.js';

export interface MemoryTokenStoreOptions {
  /**
   * Keys kept at most. Past it, the least recently used key (read or raised) is dropped, and with
   * it that session's read-your-writes guarantee beyond what replicas have already replayed: size
   * it above the number of sessions active within one TTL.
   * @default 100_000
   */
  maxKeys?: number;
  /** Clock in milliseconds, injectable for tests. @default Date.now */
  now?: () => number;
}

interface Entry {
  lsn: bigint;
  expiresAt: number;
}

/**
 * Tokens in this process's memory: right for a single instance, or for sticky sessions. Several
 * instances behind a load balancer need a shared store such as `@lagless/core/redis`.
 *
 * Expired keys are removed when next touched; keys nobody touches again drift to the
 * least-recently-used end and are the first evicted, so no timer is needed to reclaim them.
 */
export class MemoryTokenStore implements TokenStore {
  // A Map iterates in insertion order: re-inserting on every use keeps the least recently used key first.
  readonly #entries = new Map<string, Entry>();
  readonly #maxKeys: number;
  readonly #now: () => number;

  constructor(options: MemoryTokenStoreOptions = {}) {
    const { maxKeys = 100_000, now = Date.now } = options;
    if (typeof maxKeys !== 'number' || !Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw new LaglessError(
        'INVALID_OPTION',
        `Invalid option maxKeys: expected a positive integer, received ${describeValue(maxKeys)}`,
      );
    }
    if (typeof now !== 'function') {
      throw new LaglessError(
        'INVALID_OPTION',
        `Invalid option now: expected a function, received ${describeValue(now)}`,
      );
    }
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  async get(key: string): Promise<bigint | undefined> {
    assertKey(key);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAt <= this.#now()) return undefined;
    this.#entries.set(key, entry);
    return entry.lsn;
  }

  async raise(key: string, lsn: bigint, ttlMs: number): Promise<bigint> {
    assertRaiseArguments(key, lsn, ttlMs);
    const now = this.#now();
    const previous = this.#entries.get(key);
    this.#entries.delete(key);
    const kept = previous !== undefined && previous.expiresAt > now && previous.lsn > lsn ? previous.lsn : lsn;
    this.#entries.set(key, { lsn: kept, expiresAt: now + ttlMs });
    while (this.#entries.size > this.#maxKeys) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
    return kept;
  }

  /** Forgets every key. */
  async close(): Promise<void> {
    this.#entries.clear();
  }
}

/**
 * Checks the arguments every `TokenStore.raise` receives.
 * @internal shared with the Redis store, not part of the public surface.
 */
export function assertRaiseArguments(key: unknown, lsn: unknown, ttlMs: unknown): void {
  assertKey(key);
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) {
    throw new LaglessError(
      'INVALID_LSN',
      `Invalid LSN: expected a bigint from 0 to 2^64-1, received ${describeValue(lsn)}`,
    );
  }
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new LaglessError(
      'INVALID_OPTION',
      `Invalid ttlMs: expected a positive finite number of milliseconds, received ${describeValue(ttlMs)}`,
    );
  }
}

/** @internal shared with the Redis store, not part of the public surface. */
export function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new LaglessError(
      'INVALID_OPTION',
      `Invalid key: expected a non-empty string, received ${describeValue(key)}`,
    );
  }
}

/**
 * A short description of a value for error messages. Strings are shown only by length: keys are
 * session or user identifiers, which do not belong in logs.
 * @internal
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return value.length === 0 ? 'an empty string' : `a string of ${value.length} chars`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    const text = String(value);
    return text.length > 40 ? `${text.slice(0, 40)}…` : text;
  }
  return value === null ? 'null' : typeof value;
}
