import { connect } from 'node:net';
import { TestkitError } from './errors.js';

/** A decoded RESP2 reply. Bulk strings are decoded as UTF-8: enough for admin commands. */
export type RespReply = string | number | null | RespError | RespReply[];

/** An error reply (`-ERR ...`) from the server, as opposed to a failure to talk to it. */
export class RespError extends Error {
  override readonly name = 'RespError';
}

const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * Sends one command on a fresh connection and resolves with its reply; rejects with a RespError
 * when the server answers with an error. A few lines of RESP rather than a client library, so the
 * testkit needs no Redis client at run time.
 */
export function respCommand(
  host: string,
  port: number,
  args: readonly (string | number)[],
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<RespReply> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let received: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      outcome();
    };
    socket.setTimeout(timeoutMs, () =>
      settle(() =>
        reject(new TestkitError('TIMEOUT', `redis ${host}:${port}: no reply to ${args[0]} within ${timeoutMs} ms`)),
      ),
    );
    socket.once('connect', () => socket.write(encodeCommand(args)));
    socket.on('data', (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      let parsed: Parsed | undefined;
      try {
        parsed = parseReply(received, 0);
      } catch (error) {
        settle(() => reject(error));
        return;
      }
      if (parsed === undefined) return;
      const { value } = parsed;
      settle(() => (value instanceof RespError ? reject(value) : resolve(value)));
    });
    socket.once('error', (error) => settle(() => reject(error)));
    socket.once('close', () =>
      settle(() => reject(new Error(`redis ${host}:${port} closed the connection before replying to ${args[0]}`))),
    );
  });
}

/** A command as the server expects it from clients: an array of bulk strings. */
export function encodeCommand(args: readonly (string | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.from(String(arg), 'utf8');
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

interface Parsed {
  readonly value: RespReply;
  /** Offset just past the reply. */
  readonly end: number;
}

/** Decodes the reply starting at `offset`, or returns undefined while it is incomplete. */
export function parseReply(buffer: Buffer, offset: number): Parsed | undefined {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const line = buffer.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (String.fromCharCode(buffer[offset] ?? 0)) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      // The length counts bytes, so the payload is sliced from the buffer, not from a decoded string.
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespReply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`not a RESP2 reply: ${JSON.stringify(buffer.toString('utf8', offset, lineEnd))}`);
  }
}
