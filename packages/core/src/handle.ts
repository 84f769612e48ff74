import type { SessionInit } from './consistency.js';
import type { Router, RouterStats } from './router.js';

/**
 * What both ORM adapters expose as `$lagless`: the same methods, meaning the same thing, whichever
 * ORM is underneath.
 */
export interface LaglessHandle<C = unknown> extends AsyncDisposable {
  /**
   * Resolves once the first round of start-up checks is over and every node passed; otherwise
   * rejects naming each node that did not, and why (reads are served meanwhile where they can be).
   */
  ready(): Promise<void>;
  /** Stops the router: its probes, timers and waiting reads. The ORM's connections stay yours. */
  close(): Promise<void>;
  /** Per-node state, latency and lag, and read, write and token counters. */
  stats(): RouterStats;
  /** Runs `fn` in a fresh consistency scope (e.g. one HTTP request). */
  session<T>(fn: () => Promise<T> | T): Promise<T>;
  /** Runs `fn` in a scope continuing from a token (a bad one is ignored) or a token-store key. */
  session<T>(init: SessionInit, fn: () => Promise<T> | T): Promise<T>;
  /** The current scope's token, for a header or cookie; undefined when it requires nothing. */
  token(): Promise<string | undefined>;
  /** The core router: events (`on`), `failures()`, `addReplica`, `removeReplica`, `read`, `write`. */
  readonly router: Router<C>;
}

/** The `$lagless` handle over a router (looked up on each call: an adapter may replace it). */
export function laglessHandle<C>(router: () => Router<C>): LaglessHandle<C> {
  return Object.freeze({
    ready: () => router().ready(),
    close: () => router().close(),
    stats: () => router().stats(),
    session: ((initOrFn: SessionInit | (() => unknown), fn?: () => unknown) =>
      fn === undefined
        ? router().session(initOrFn as () => unknown)
        : router().session(initOrFn as SessionInit, fn)) as LaglessHandle<C>['session'],
    token: () => router().token(),
    get router() {
      return router();
    },
    [Symbol.asyncDispose]: () => router().close(),
  });
}
