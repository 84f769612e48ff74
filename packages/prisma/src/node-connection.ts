import { describeFailure, LaglessError } from '@lagless/core';
import type { SqlDriverAdapter, SqlDriverAdapterFactory } from './driver-types.js';

/**
 * One database node behind the routing adapter: its driver adapter factory (a `PrismaPg`), connected
 * lazily so the router can probe nodes before Prisma connects, and disposed with the client.
 */
export class NodeConnection {
  readonly name: string;
  readonly factory: SqlDriverAdapterFactory;
  readonly isReplica: boolean;
  #adapter: Promise<SqlDriverAdapter> | undefined;
  #closed = false;

  constructor(name: string, factory: SqlDriverAdapterFactory, isReplica: boolean) {
    this.name = name;
    this.factory = factory;
    this.isReplica = isReplica;
  }

  adapter(): Promise<SqlDriverAdapter> {
    if (this.#closed) {
      return Promise.reject(new LaglessError('CLOSED', `the connection to ${this.name} was disposed`));
    }
    if (!this.#adapter) {
      const connecting = this.factory.connect();
      this.#adapter = connecting;
      // A failed connect must not stick: the next statement tries again.
      connecting.catch(() => {
        if (this.#adapter === connecting) this.#adapter = undefined;
      });
    }
    return this.#adapter;
  }

  /** Runs a probe through the node's own driver adapter; rows as objects, as the router expects. */
  async query(sql: string): Promise<Array<Record<string, unknown>>> {
    let result: Awaited<ReturnType<SqlDriverAdapter['queryRaw']>>;
    try {
      const adapter = await this.adapter();
      result = await adapter.queryRaw({ sql, args: [], argTypes: [] });
    } catch (error) {
      // Prisma's adapter error says only "AuthenticationFailed"; events and ready() should name the
      // node and the server's own code and words.
      const { code, message } = describeFailure(error);
      throw Object.assign(new Error(message, { cause: error }), { code, node: this.name });
    }
    return result.rows.map((row) => {
      const record: Record<string, unknown> = {};
      result.columnNames.forEach((column, i) => {
        record[column] = row[i];
      });
      return record;
    });
  }

  /** Disposes the driver adapter; with `reopen`, a later statement connects again. */
  async dispose(reopen: boolean): Promise<void> {
    if (!reopen) this.#closed = true;
    const adapter = this.#adapter;
    this.#adapter = undefined;
    if (!adapter) return;
    const connected = await adapter.catch(() => undefined);
    await connected?.dispose();
  }
}
