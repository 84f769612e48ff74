import { type BackoffOptions, backoffDelay } from './backoff.js';
import type { TokenStore } from './token-store.js';

interface PendingRaise {
  lsn: bigint;
  expiresAt: number;
}

export interface PendingRaisesOptions {
  /** Keys kept at most; past it the oldest raise is dropped (and reported). */
  readonly maxKeys: number;
  readonly backoff: Readonly<BackoffOptions>;
  readonly random: () => number;
  readonly now: () => number;
  /** A retry landed: the store answers again. */
  readonly onLanded: () => void;
  readonly onFailed: (error: unknown) => void;
  readonly onDropped: (reason: 'overflow' | 'expired') => void;
}

/**
 * Raises the token store refused, kept until they land or their key would have expired anyway.
 * A fast-failing store client gives up on a command at once during an outage; without this, the
 * write it recorded would be forgotten for good and another instance would read stale after the
 * store came back. One timer, unref'd, with backoff; memory bounded by `maxKeys`.
 */
export class PendingRaises {
  readonly #store: TokenStore;
  readonly #options: PendingRaisesOptions;
  // Insertion order is age order: the first key is the one dropped on overflow.
  readonly #byKey = new Map<string, PendingRaise>();
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #flushing = false;
  #closed = false;

  constructor(store: TokenStore, options: PendingRaisesOptions) {
    this.#store = store;
    this.#options = options;
  }

  get size(): number {
    return this.#byKey.size;
  }

  add(key: string, lsn: bigint, ttlMs: number): void {
    if (this.#closed) return;
    const expiresAt = this.#options.now() + ttlMs;
    const existing = this.#byKey.get(key);
    if (existing) {
      if (lsn > existing.lsn) existing.lsn = lsn;
      existing.expiresAt = Math.max(existing.expiresAt, expiresAt);
    } else {
      this.#byKey.set(key, { lsn, expiresAt });
      while (this.#byKey.size > this.#options.maxKeys) {
        const oldest = this.#byKey.keys().next();
        if (oldest.done === true) break;
        this.#byKey.delete(oldest.value);
        this.#options.onDropped('overflow');
      }
    }
    this.#schedule();
  }

  /** What this instance still owes the store for `key`: reads here take it into account. */
  lsnFor(key: string): bigint | undefined {
    const entry = this.#byKey.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.#options.now()) return undefined;
    return entry.lsn;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#byKey.clear();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#flushing || this.#closed || this.#byKey.size === 0) return;
    const delay = backoffDelay(this.#attempt, this.#options.backoff, this.#options.random);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, delay);
    this.#timer.unref();
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      for (const [key, entry] of [...this.#byKey]) {
        if (this.#closed) return;
        const remaining = entry.expiresAt - this.#options.now();
        if (remaining <= 0) {
          this.#byKey.delete(key);
          this.#options.onDropped('expired');
          continue;
        }
        const lsn = entry.lsn;
        try {
          await this.#store.raise(key, lsn, remaining);
        } catch (error) {
          this.#attempt++;
          this.#options.onFailed(error);
          return;
        }
        this.#attempt = 0;
        this.#options.onLanded();
        // A newer raise for the same key may have merged in while this one was on the wire.
        if (this.#byKey.get(key) === entry && entry.lsn === lsn) this.#byKey.delete(key);
      }
    } finally {
      this.#flushing = false;
      this.#schedule();
    }
  }
}
