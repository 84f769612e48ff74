import { AsyncLocalStorage } from 'node:async_hooks';
import type { NodeConnection } from './node-connection.js';

/** Where the statements of one Prisma operation go. */
export type RouteMode = 'primary' | 'replica';

/** The routing state of one Prisma operation, read by the driver adapter for each of its statements. */
export interface OperationRoute {
  readonly mode: RouteMode;
  /** Set by `$primary()` / `$replica()`: the operation's kind no longer decides. */
  readonly forced: boolean;
  /** Prisma may merge this operation with others into one statement (findUnique batching). */
  readonly batched: boolean;
  /**
   * The operation runs inside the router's `write()`, which counts it and raises the scope after it
   * settled: a transaction it commits on the way needs no accounting of its own.
   */
  readonly write: boolean;
  /**
   * The node that ran the operation's first statement: later statements of the same operation
   * (relation loads, `include`) go there too, so one result never mixes two replay positions.
   */
  pinned: NodeConnection | undefined;
}

export function newOperation(mode: RouteMode, forced: boolean, batched: boolean, write: boolean): OperationRoute {
  return { mode, forced, batched, write, pinned: undefined };
}

/**
 * Writes made inside `$transaction`s whose commit the drop-in path cannot see: the next operation
 * of the same session records them (see `extension.ts`).
 */
export interface TransactionWrites {
  pending: boolean;
}

/**
 * Everything the adapter threads through the async context, in one frame: what `$primary()` /
 * `$replica()` forced, the operation being awaited, and the drop-in path's per-session state.
 * A nested `run()` copies the frame around it and changes only what it names.
 */
export interface RouteFrame {
  /** Set around the awaiting of an operation started from `$primary()` / `$replica()`. */
  readonly forced?: RouteMode | undefined;
  /** Set around the awaiting of one routed operation. */
  readonly operation?: OperationRoute | undefined;
  /** Set by `$lagless.session()` on the drop-in path. */
  readonly transactionWrites?: TransactionWrites | undefined;
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

const EMPTY_FRAME: RouteFrame = Object.freeze({});

/**
 * Shared between an adapter and the extension over it: the one AsyncLocalStorage of this package,
 * and the findUnique reads in flight.
 */
export class RoutingState {
  readonly #frames = new AsyncLocalStorage<RouteFrame>();
  readonly inflight = new InflightReads();

  /** The frame of the current async context (an empty one outside every `run()`). */
  frame(): RouteFrame {
    return this.#frames.getStore() ?? EMPTY_FRAME;
  }

  /** Runs `fn` with the current frame changed by `change`. */
  run<T>(change: RouteFrame, fn: () => T): T {
    return this.#frames.run({ ...this.#frames.getStore(), ...change }, fn);
  }
}
