import { LaglessError } from './errors.js';

/**
 * Settles with `work`, or rejects with QUERY_TIMEOUT after `ms`. The work itself cannot be
 * cancelled generically; its late outcome is swallowed so it never becomes an unhandled rejection.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      work.catch(() => {});
      reject(
        new LaglessError('QUERY_TIMEOUT', `${what} did not answer within ${ms} ms`, { context: { timeoutMs: ms } }),
      );
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

interface Watched {
  readonly deadline: number;
  readonly expire: () => void;
}

/**
 * Deadlines for many short operations behind one timer. A timer per read costs more than the rest
 * of routing put together (measured in bench/core-read-overhead.ts); one sweep every
 * `granularityMs` cuts an operation at most that much after its deadline.
 */
export class DeadlineWatch {
  readonly #granularityMs: number;
  readonly #watched = new Set<Watched>();
  #timer: NodeJS.Timeout | undefined;

  constructor(granularityMs: number) {
    this.#granularityMs = granularityMs;
  }

  /** Calls `expire` once `ms` have passed, unless the returned function is called first. */
  watch(ms: number, expire: () => void): () => void {
    const entry: Watched = { deadline: performance.now() + ms, expire };
    this.#watched.add(entry);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#sweep(), this.#granularityMs);
      this.#timer.unref();
    }
    return () => {
      this.#watched.delete(entry);
    };
  }

  #sweep(): void {
    const now = performance.now();
    for (const entry of this.#watched) {
      if (entry.deadline <= now) {
        this.#watched.delete(entry);
        entry.expire();
      }
    }
    if (this.#watched.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }
}

/**
 * A wake-up after `ms`, or at once when `signal` aborts (a closed router settles its waits at
 * once). `cancel()` removes its timer and its abort listener: a wait that lost a race to a probe
 * leaves nothing behind (thousands of waiting reads would otherwise pile listeners on the signal).
 */
export function wakeAfter(ms: number, signal: AbortSignal): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const promise = new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const abort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    onAbort = abort;
    timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
    },
  };
}
