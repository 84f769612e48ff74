import type { FallbackReason } from './replica-choice.js';

/**
 * Why the primary served a read: `forced` (`read(fn, { primary: true })`, `$primary()`),
 * `no-replicas` (the router has none), or the fallback reason a `fallback` event names.
 */
export type PrimaryReadReason = 'forced' | 'no-replicas' | FallbackReason;

/** One read, once it settled: which node served it and what it took to get there. */
export interface ServedRead {
  /** The node that ran the read last (after a retry, the one that answered or failed for good). */
  readonly node: string;
  readonly route: 'replica' | 'primary';
  /** Why the primary served it; undefined when a replica did. */
  readonly reason: PrimaryReadReason | undefined;
  /** Time spent waiting for a replica to replay what the read required, in ms (0 without a wait). */
  readonly waitedMs: number;
  /** Nodes the read ran on: 1, or more after connection-level failures (each a `retry` event). */
  readonly attempts: number;
  /** From `read()` being called to the read settling, in ms: waits and retries included. */
  readonly durationMs: number;
  /** False when the read settled with an error (a query error, or the last node failing too). */
  readonly ok: boolean;
}

/** Told about each read of a session (and of sessions nested in it). */
export type ReadObserver = (read: ServedRead) => void;

/**
 * What the router learns about one observed read as it runs. Allocated only when someone observes
 * reads: the read loop takes it as an optional argument and leaves it alone when absent.
 */
export class ReadTrace {
  readonly startedAt = performance.now();
  node: string | undefined;
  route: 'replica' | 'primary' = 'primary';
  reason: PrimaryReadReason | undefined;
  waitedMs = 0;
  attempts = 0;

  ranOn(target: { readonly name: string; readonly role: 'replica' | 'primary' }): void {
    this.node = target.name;
    this.route = target.role;
    this.attempts++;
  }

  /** The read's record, or undefined when it never reached a node (closed router, wait timeout). */
  settle(ok: boolean): ServedRead | undefined {
    if (this.node === undefined) return undefined;
    return Object.freeze({
      node: this.node,
      route: this.route,
      reason: this.route === 'primary' ? this.reason : undefined,
      waitedMs: this.waitedMs,
      attempts: this.attempts,
      durationMs: performance.now() - this.startedAt,
      ok,
    });
  }
}
