/** What the router tells observers. LSNs are in `pg_lsn` text form. */
export interface RouterEvents {
  'replica-down': { replica: string; error: unknown };
  'replica-up': { replica: string; replayLsn: string | undefined };
  'replica-misconfigured': { replica: string; error: Error };
  /** A read needed an LSN no replica was known to have replayed, and waited. */
  wait: { requiredLsn: string; waitedMs: number; outcome: 'replica' | 'timeout' | 'no-replica'; replica?: string };
  /** A read went to the primary although it could have gone to a replica. */
  fallback: {
    reason: 'lsn-timeout' | 'no-replica' | 'retries-exhausted' | 'store-unavailable' | 'write-position-unknown';
  };
  /** A read failed on a replica at the connection level and runs again elsewhere. */
  retry: { replica: string; error: unknown };
  'store-error': { operation: 'get' | 'raise'; error: unknown };
  /** Once, when the router has no replicas: every read goes to the primary. */
  'no-replicas': Record<string, never>;
}

export type RouterEventName = keyof RouterEvents;
export type RouterListener<E extends RouterEventName> = (payload: RouterEvents[E]) => void;

/** A minimal typed emitter: a listener that throws never breaks the read that emitted. */
export class RouterEventEmitter {
  readonly #listeners = new Map<RouterEventName, Set<(payload: never) => void>>();

  on<E extends RouterEventName>(event: E, listener: RouterListener<E>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as (payload: never) => void);
    return () => this.off(event, listener);
  }

  off<E extends RouterEventName>(event: E, listener: RouterListener<E>): void {
    this.#listeners.get(event)?.delete(listener as (payload: never) => void);
  }

  emit<E extends RouterEventName>(event: E, payload: RouterEvents[E]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as RouterListener<E>)(payload);
      } catch {
        // An observer's bug must not fail a user's query.
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
