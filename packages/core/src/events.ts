import type { LaglessError } from './errors.js';
import type { ServedRead } from './served-read.js';
import type { TokenRejectionReason } from './token.js';

/** Why a failed node is failing: the server's or driver's code, and the message in one line. */
interface Failure {
  error: unknown;
  /** SQLSTATE (`28P01`), errno (`ECONNREFUSED`) or driver code; undefined when none was given. */
  code: string | undefined;
  reason: string;
}

/** What the router tells observers. LSNs are in `pg_lsn` text form. */
export interface RouterEvents {
  'replica-down': { replica: string } & Failure;
  'replica-up': { replica: string; replayLsn: string | undefined };
  /** Refused for good: not a standby (a primary, or promoted), or of another cluster. */
  'replica-misconfigured': { replica: string; error: LaglessError };
  /** The primary stopped answering (a probe, a write or a read failed at the connection level). */
  'primary-down': { primary: string } & Failure;
  'primary-up': { primary: string; walLsn: string };
  /** The primary answered with another identity than the pinned `systemIdentifier`, or is in recovery. */
  'primary-misconfigured': { primary: string; error: LaglessError };
  /** A read needed an LSN no replica was known to have replayed, and waited. */
  wait: { requiredLsn: string; waitedMs: number; outcome: 'replica' | 'timeout' | 'no-replica'; replica?: string };
  /** A read went to the primary although it could have gone to a replica. */
  fallback: {
    reason:
      | 'lsn-timeout'
      | 'no-replica'
      | 'retries-exhausted'
      | 'store-unavailable'
      | 'write-position-unknown'
      | 'read-position-unknown';
  };
  /** A read failed on a replica at the connection level and runs again elsewhere. */
  retry: { replica: string; error: unknown };
  /** One token store call failed (the router read from the primary, or will retry the raise). */
  'store-error': { operation: 'get' | 'raise' | 'check'; error: unknown };
  /** The token store stopped answering: keyed sessions read from the primary until it is back. */
  'store-down': { error: unknown; reason: string };
  'store-up': Record<string, never>;
  /**
   * The token store lost data (restarted empty, flushed, failed over to an empty node): keys it no
   * longer knows require at least `floorLsn`, the primary's position when the loss was found.
   */
  'store-data-lost': { floorLsn: string };
  /** Something about the token store's setup can lose tokens (e.g. an eviction policy). */
  'store-warning': { message: string };
  /** A raise could not be kept for retry: memory for pending raises is full, or its key expired. */
  'store-raise-dropped': { reason: 'overflow' | 'expired' };
  /** A client's token could not be trusted and was ignored, as if absent. */
  'token-rejected': { reason: TokenRejectionReason; error: LaglessError };
  /** Once, when the router has no replicas: every read goes to the primary. */
  'no-replicas': Record<string, never>;
  /**
   * A replica's measured lag reached `lagAlertMs` (`behind`), or fell back below half of it
   * (`recovered`): once each way, from the background probes.
   */
  lag: { replica: string; state: 'behind' | 'recovered'; lagMs: number; lagBytes: number; thresholdMs: number };
  /**
   * Each read once it settled, naming the node that served it. Emitted only while someone listens:
   * with no listener, reads do not measure anything for it.
   */
  read: ServedRead;
}

export type RouterEventName = keyof RouterEvents;
export type RouterListener<E extends RouterEventName> = (payload: RouterEvents[E]) => void;

/**
 * Where state-change lines go: a function gets every one; `false` silences them. By default a
 * line is printed on stderr only when no listener handles its event, as ioredis does for an
 * unhandled `'error'`.
 */
export type RouterLogger = ((line: string, event: RouterEventName) => void) | false;

/** A minimal typed emitter: a listener that throws never breaks the read that emitted. */
export class RouterEventEmitter {
  readonly #listeners = new Map<RouterEventName, Set<(payload: never) => void>>();
  readonly #logger: RouterLogger | undefined;
  #closed = false;

  /** @param logger undefined: stderr, for events nobody listens to. */
  constructor(logger?: RouterLogger) {
    this.#logger = logger;
  }

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

  listenerCount(event: RouterEventName): number {
    return this.#listeners.get(event)?.size ?? 0;
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

  /**
   * Emits a state change, and logs `line` (built only when it will be written; none for changes
   * not worth a line, such as a replica's first admission).
   */
  stateChange<E extends RouterEventName>(event: E, payload: RouterEvents[E], line: (() => string) | undefined): void {
    const unheard = this.listenerCount(event) === 0;
    this.emit(event, payload);
    const logger = this.#logger;
    if (logger === false || line === undefined || this.#closed) return;
    try {
      if (typeof logger === 'function') logger(`[lagless] ${line()}`, event);
      else if (unheard) process.stderr.write(`[lagless] ${line()}\n`);
    } catch {
      // Logging must not fail a user's query either.
    }
  }

  /** Forgets every listener and logs nothing more: probes that end after a close are not news. */
  close(): void {
    this.#listeners.clear();
    this.#closed = true;
  }
}
