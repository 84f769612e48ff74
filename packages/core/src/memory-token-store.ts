import { invalidOption, LaglessError, showValue } from './errors.js';
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
      throw invalidOption('maxKeys', 'a positive integer', maxKeys);
    }
    if (typeof now !== 'function') throw invalidOption('now', 'a function', now);
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
      `Invalid LSN: expected a bigint from 0 to 2^64-1, received ${showValue(lsn)}`,
    );
  }
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw invalidOption('ttlMs', 'a positive finite number of milliseconds', ttlMs);
  }
}

/** @internal shared with the Redis store, not part of the public surface. */
export function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    // Keys are session or user identifiers, which do not belong in logs: shown by length only.
    throw invalidOption('key', 'a non-empty string', key, { conceal: true });
  }
}
