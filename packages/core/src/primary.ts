import { CoalescedProbe } from './coalesced-probe.js';
import { describeFailure, isConnectionLevelError } from './connection-errors.js';
import { LaglessError } from './errors.js';
import type { RouterEventEmitter } from './events.js';
import { PrimaryLsnHistory } from './lag.js';
import { formatLsn } from './lsn.js';
import type { NodeIdentity, NodeProbes } from './probes.js';

export type PrimaryStatus = 'unknown' | 'up' | 'down';

/**
 * What the router knows of the primary: whether it answers, what identity it reported, and its WAL
 * position over time (for lag in milliseconds and for checking tokens). It never blocks a read on
 * the primary: callers decide whether to wait for a probe.
 */
export class PrimaryTracker {
  readonly name: string;
  readonly history = new PrimaryLsnHistory();
  /** The primary's WAL position; `fresh()` is read after the call began (what a writer needs). */
  readonly walProbe: CoalescedProbe<bigint>;
  readonly #probes: NodeProbes;
  readonly #events: RouterEventEmitter;
  #status: PrimaryStatus = 'unknown';
  #reportedIdentity: string | undefined;
  #lastFailure: { code: string | undefined; reason: string } | undefined;
  /** Called when the primary answers after being down or unknown: start-up re-checks identities then. */
  onRecovered: (() => void) | undefined;

  constructor(name: string, probes: NodeProbes, events: RouterEventEmitter) {
    this.name = name;
    this.#probes = probes;
    this.#events = events;
    this.walProbe = new CoalescedProbe(() => this.#readWalPosition());
  }

  get status(): PrimaryStatus {
    return this.#status;
  }

  /** The `system_identifier` the primary reported last time it was asked; undefined before. */
  get reportedIdentity(): string | undefined {
    return this.#reportedIdentity;
  }

  get lastFailure(): { code: string | undefined; reason: string } | undefined {
    return this.#lastFailure;
  }

  /** Asks the primary who it is. A primary in recovery is no primary: PRIMARY_MISCONFIGURED. */
  async identity(): Promise<NodeIdentity> {
    const at = Date.now();
    let identity: NodeIdentity;
    try {
      identity = await this.#probes.identity();
    } catch (error) {
      this.reportFailure(error, true);
      throw error;
    }
    if (identity.inRecovery || identity.walLsn === undefined) {
      const error = new LaglessError(
        'PRIMARY_MISCONFIGURED',
        `the primary "${this.name}" is in recovery: it is a standby, not a primary`,
        { context: { primary: this.name } },
      );
      this.#markDown(error);
      throw error;
    }
    this.#reportedIdentity = identity.systemIdentifier;
    this.#record(identity.walLsn, at);
    this.#markUp(identity.walLsn);
    return identity;
  }

  /**
   * A failure seen on the primary: by a probe, or by a read or write that ran there. Only a
   * connection-level one (or any probe failure) says it is down; a query error is the query's.
   */
  reportFailure(error: unknown, fromProbe = false): void {
    if (fromProbe || isConnectionLevelError(error)) this.#markDown(error);
  }

  async #readWalPosition(): Promise<bigint> {
    const at = Date.now();
    let lsn: bigint;
    try {
      lsn = await this.#probes.walPosition();
    } catch (error) {
      this.reportFailure(error, true);
      throw error;
    }
    this.#record(lsn, at);
    this.#markUp(lsn);
    return lsn;
  }

  #record(lsn: bigint, at: number): void {
    const latest = this.history.latestLsn;
    if (latest !== undefined && lsn < latest && at >= this.history.latestAt) this.history.restart(lsn, at);
    else this.history.record(lsn, at);
  }

  #markUp(lsn: bigint): void {
    const was = this.#status;
    this.#status = 'up';
    this.#lastFailure = undefined;
    if (was === 'up') return;
    if (was === 'down') {
      this.#events.stateChange(
        'primary-up',
        { primary: this.name, walLsn: formatLsn(lsn) },
        () => `primary "${this.name}" answers again`,
      );
    }
    this.onRecovered?.();
  }

  #markDown(error: unknown): void {
    const { code, message } = describeFailure(error);
    this.#lastFailure = { code, reason: message };
    if (this.#status === 'down') return;
    this.#status = 'down';
    if (error instanceof LaglessError && error.code === 'PRIMARY_MISCONFIGURED') {
      this.#events.stateChange('primary-misconfigured', { primary: this.name, error }, () => error.message);
      return;
    }
    this.#events.stateChange(
      'primary-down',
      { primary: this.name, error, code, reason: message },
      () =>
        `primary "${this.name}" is unreachable: ${message}${code ? ` (${code})` : ''}; replicas keep serving the reads they can`,
    );
  }
}
