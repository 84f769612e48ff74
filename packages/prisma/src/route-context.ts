import { AsyncLocalStorage } from 'node:async_hooks';
import type { NodeConnection } from './node-connection.js';

/** Where the statements of one Prisma operation go. */
export type RouteMode = 'primary' | 'replica';

/**
 * The routing state of one Prisma operation, visible to the driver adapter through
 * AsyncLocalStorage while the operation is awaited.
 */
export interface RouteContext {
  readonly mode: RouteMode;
  /** Set by `$primary()` / `$replica()`: the operation's kind no longer decides. */
  readonly forced: boolean;
  /** Prisma may merge this operation with others into one statement (findUnique batching). */
  readonly batched: boolean;
  /**
   * The node that ran the operation's first statement: later statements of the same operation
   * (relation loads, `include`) go there too, so one result never mixes two replay positions.
   */
  pinned: NodeConnection | undefined;
  /** A transaction of this operation committed; its commit already raised the scope's LSN. */
  committed: boolean;
}

export function newContext(mode: RouteMode, forced: boolean, batched: boolean): RouteContext {
  return { mode, forced, batched, pinned: undefined, committed: false };
}

/** What an in-flight batchable read needs from the node that serves it. */
export type Requirement = bigint | 'primary';

/**
 * The requirements of every batchable read currently in flight on one client. A statement that may
 * merge several of them cannot tell whose they are, so it satisfies all of them: the strictest
 * wins. The cost: an unscoped findUnique that runs alongside a scoped one may wait for the scoped
 * one's LSN (or run on the primary). It never returns older data than any caller is owed.
 */
export class InflightReads {
  readonly #entries = new Set<{ requirement: Requirement | Promise<Requirement> }>();

  /** Registers a read for its duration; call the returned function when it settled. */
  add(requirement: Requirement | Promise<Requirement>): () => void {
    const entry = { requirement };
    this.#entries.add(entry);
    return () => {
      this.#entries.delete(entry);
    };
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The strictest requirement among the reads in flight now. */
  async strictest(): Promise<Requirement> {
    let max = 0n;
    const pending: Promise<Requirement>[] = [];
    for (const { requirement } of this.#entries) {
      if (requirement === 'primary') return 'primary';
      if (typeof requirement === 'bigint') {
        if (requirement > max) max = requirement;
      } else {
        pending.push(requirement);
      }
    }
    for (const requirement of await Promise.all(pending)) {
      if (requirement === 'primary') return 'primary';
      if (requirement > max) max = requirement;
    }
    return max;
  }
}

/** Shared between an adapter and the extension over it. */
export class RoutingState {
  readonly als = new AsyncLocalStorage<RouteContext>();
  /** Set by `$primary()` / `$replica()` around the awaiting of one operation. */
  readonly forced = new AsyncLocalStorage<RouteMode>();
  readonly inflight = new InflightReads();
}
