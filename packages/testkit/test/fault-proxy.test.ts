import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isTestkitError } from '../src/errors.js';
import { createFaultProxy, type FaultProxy, type FaultProxyOptions } from '../src/fault-proxy.js';
import { type Cluster, startCluster } from '../src/index.js';
import { freePort } from '../src/ports.js';

let postgres: Cluster | undefined;
const proxies: FaultProxy[] = [];
const clients: pg.Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

function databaseUrl(): string {
  if (postgres === undefined) throw new Error('postgres fixture did not start');
  return postgres.primary.url;
}

/** A second server to retarget to: the replica answers `inet_server_port()` like any server. */
function otherServer(): { url: string; port: number } {
  const replica = postgres?.replicas[0];
  if (replica === undefined) throw new Error('postgres fixture has no replica');
  return replica;
}

async function serverPort(client: pg.Client): Promise<number> {
  return (await client.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]?.port ?? -1;
}

async function proxy(options: Partial<FaultProxyOptions> = {}): Promise<FaultProxy> {
  const created = await createFaultProxy({ target: databaseUrl(), ...options });
  proxies.push(created);
  return created;
}

/** A pg client through `through`; its 'error' events are recorded instead of crashing the run. */
async function connectClient(through: FaultProxy): Promise<{ client: pg.Client; errors: Error[] }> {
  const client = new pg.Client({ connectionString: through.url(databaseUrl()) });
  const errors: Error[] = [];
  client.on('error', (error) => errors.push(error));
  clients.push(client);
  await client.connect();
  return { client, errors };
}

async function timeQuery(client: pg.Client): Promise<number> {
  const started = performance.now();
  await client.query('SELECT 1');
  return performance.now() - started;
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('fault proxy against PostgreSQL', () => {
  beforeAll(async () => {
    postgres = await startCluster({ replicas: 1 });
  }, 60_000);

  afterAll(async () => {
    await postgres?.stop();
  }, 30_000);

  it('passes queries through unchanged with no latency', async () => {
    const through = await proxy();
    const { client } = await connectClient(through);
    const result = await client.query<{ sum: number }>('SELECT $1::int + $2::int AS sum', [40, 2]);
    expect(result.rows).toEqual([{ sum: 42 }]);
    expect(through.connectionCount).toBe(1);

    await client.end();
    await until(() => through.connectionCount === 0);
  });

  it('adds latencyMs to every downstream round trip', async () => {
    const through = await proxy({ latencyMs: 80 });
    const { client } = await connectClient(through);
    for (let i = 0; i < 3; i += 1) {
      expect(await timeQuery(client)).toBeGreaterThanOrEqual(80);
    }
  });

  it("charges latency twice per round trip with direction 'both'", async () => {
    const through = await proxy({ latencyMs: 80, direction: 'both' });
    const { client } = await connectClient(through);
    expect(await timeQuery(client)).toBeGreaterThanOrEqual(160);
  });

  it('applies setLatency() to an open connection', async () => {
    const through = await proxy();
    const { client } = await connectClient(through);
    through.setLatency(70, 'upstream');
    expect(through.direction).toBe('upstream');
    expect(await timeQuery(client)).toBeGreaterThanOrEqual(70);
  });

  it('stall() holds a query without closing the connection; unstall() lets it finish', async () => {
    const through = await proxy();
    const { client, errors } = await connectClient(through);
    through.stall();
    const query = client.query<{ n: number }>('SELECT 42 AS n');
    const outcome = await Promise.race([query.then(() => 'completed'), sleep(300).then(() => 'timed out')]);
    expect(outcome).toBe('timed out');
    expect(through.connectionCount).toBe(1);

    through.unstall();
    const result = await query;
    expect(result.rows).toEqual([{ n: 42 }]);
    expect(errors).toEqual([]);
  });

  it('resetConnections() breaks open clients, and new ones connect again', async () => {
    const through = await proxy();
    const { client, errors } = await connectClient(through);
    const failed = once(client, 'error');
    through.resetConnections();
    await failed;
    expect(errors.length).toBeGreaterThan(0);
    await expect(client.query('SELECT 1')).rejects.toThrow();

    const { client: fresh } = await connectClient(through);
    const result = await fresh.query<{ ok: number }>('SELECT 1 AS ok');
    expect(result.rows).toEqual([{ ok: 1 }]);
  });

  it('refuseConnections(true) makes connecting fail until it is lifted', async () => {
    const through = await proxy();
    through.refuseConnections(true);
    await expect(connectClient(through)).rejects.toThrow();
    expect(through.connectionCount).toBe(0);

    through.refuseConnections(false);
    const { client } = await connectClient(through);
    expect((await client.query<{ ok: number }>('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('retarget() sends new connections to the new server and resets the open ones', async () => {
    const primaryPort = postgres?.primary.port;
    const other = otherServer();
    const through = await proxy();
    expect(through.target).toEqual({ host: '127.0.0.1', port: primaryPort });
    const { client: old, errors } = await connectClient(through);
    expect(await serverPort(old)).toBe(primaryPort);

    const failed = once(old, 'error');
    through.retarget(other.url);
    await failed;
    expect(errors.length).toBeGreaterThan(0);
    await expect(old.query('SELECT 1')).rejects.toThrow();
    expect(through.target).toEqual({ host: '127.0.0.1', port: other.port });

    const { client: fresh } = await connectClient(through);
    expect(await serverPort(fresh)).toBe(other.port);
  });

  it('retarget() with resetExisting: false leaves open connections on the old server', async () => {
    const primaryPort = postgres?.primary.port;
    const other = otherServer();
    const through = await proxy();
    const { client: old, errors } = await connectClient(through);
    through.retarget({ port: other.port }, { resetExisting: false });
    const { client: fresh } = await connectClient(through);
    expect(await serverPort(fresh)).toBe(other.port);
    expect(await serverPort(old)).toBe(primaryPort);
    expect(errors).toEqual([]);
  });

  it('close() drops open connections and frees the port', async () => {
    const through = await createFaultProxy({ target: databaseUrl() });
    const { client } = await connectClient(through);
    const failed = once(client, 'error');
    await through.close();
    await failed;
    await through.close();

    const server = createServer();
    server.listen(through.port, '127.0.0.1');
    await once(server, 'listening');
    server.close();
    await once(server, 'close');
  });
});

describe('fault proxy without PostgreSQL', () => {
  let echo: Server;
  let echoPort: number;

  beforeAll(async () => {
    echo = createServer((socket) => {
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    const address = echo.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    echoPort = address.port;
  });

  afterAll(async () => {
    echo.close();
    await once(echo, 'close');
  });

  async function echoClient(through: FaultProxy): Promise<{ socket: Socket; received: () => Buffer }> {
    const socket = createConnection({ host: through.host, port: through.port });
    socket.on('error', () => {});
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(socket, 'connect');
    return { socket, received: () => Buffer.concat(chunks) };
  }

  it('keeps byte order while latency changes mid-stream', async () => {
    const through = await proxy({ target: { port: echoPort }, latencyMs: 15, direction: 'both' });
    const { socket, received } = await echoClient(through);
    const expected: string[] = [];
    for (let i = 0; i < 200; i += 1) {
      // Alternating long and zero latency: without the due-time floor, the
      // zero-latency chunks would overtake the delayed ones.
      through.setLatency(i % 2 === 0 ? 15 : 0, 'both');
      const line = `${i}\n`;
      expected.push(line);
      socket.write(line);
      if (i % 10 === 0) await sleep(1);
    }
    const want = expected.join('');
    await until(() => received().length >= want.length);
    expect(received().toString()).toBe(want);
    socket.destroy();
  });

  it('delivers a large transfer intact across a stall and latency', async () => {
    const through = await proxy({ target: { host: '127.0.0.1', port: echoPort }, latencyMs: 5 });
    const { socket, received } = await echoClient(through);
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 1) payload[i] = (i * 31) % 251;
    through.stall();
    socket.write(payload);
    await sleep(100);
    expect(received().length).toBe(0);
    through.unstall();
    await until(() => received().length >= payload.length, 20_000);
    expect(received().equals(payload)).toBe(true);
    socket.destroy();
  }, 30_000);

  it('resets the client when the target refuses, without an unhandled error', async () => {
    const closedPort = await freePort();
    const through = await proxy({ target: { port: closedPort } });
    const socket = createConnection({ host: through.host, port: through.port });
    const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNRESET');
  });

  it('url() swaps host and port and keeps everything else', async () => {
    const through = await proxy({ target: { port: echoPort } });
    expect(through.url('postgres://alice:s3cr%40t@db.internal:5432/app?sslmode=disable&application_name=x')).toBe(
      `postgres://alice:s3cr%40t@127.0.0.1:${through.port}/app?sslmode=disable&application_name=x`,
    );
    expect(through.url('postgresql://bob@[::1]/app')).toBe(`postgresql://bob@127.0.0.1:${through.port}/app`);
    expect(() => through.url('not a url')).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });

  it('listens on the requested port', async () => {
    const port = await freePort();
    const through = await proxy({ target: { port: echoPort }, listenPort: port });
    expect(through.port).toBe(port);
    expect(through.host).toBe('127.0.0.1');
  });

  it.each<[string, FaultProxyOptions, string]>([
    ['negative latency', { target: { port: 5432 }, latencyMs: -1 }, 'latencyMs'],
    ['NaN latency', { target: { port: 5432 }, latencyMs: Number.NaN }, 'latencyMs'],
    ['infinite latency', { target: { port: 5432 }, latencyMs: Number.POSITIVE_INFINITY }, 'latencyMs'],
    ['out-of-range listen port', { target: { port: 5432 }, listenPort: 70_000 }, 'listenPort'],
    ['fractional listen port', { target: { port: 5432 }, listenPort: 1.5 }, 'listenPort'],
    ['zero target port', { target: { port: 0 } }, 'target.port'],
    ['unparsable target URL', { target: 'not a url' }, 'target'],
    ['non-postgres target URL without a port', { target: 'http://127.0.0.1/' }, 'target'],
    ['unknown direction', { target: { port: 5432 }, direction: 'sideways' as never }, 'direction'],
  ])('rejects %s with INVALID_OPTION', async (_name, options, option) => {
    const error: unknown = await createFaultProxy(options).then(
      (created) => {
        proxies.push(created);
        return undefined;
      },
      (thrown: unknown) => thrown,
    );
    expect(isTestkitError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'INVALID_OPTION' });
    expect((error as Error).message).toContain(option);
  });

  it('names the received value and hides passwords in messages', async () => {
    await expect(createFaultProxy({ target: { port: 5432 }, latencyMs: -5 })).rejects.toThrow(/-5/);
    await expect(createFaultProxy({ target: 'mysql://u:hunter2@h/db' })).rejects.toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('hunter2') }),
    );
  });

  it('takes a URL of any scheme that names a port', async () => {
    const through = await proxy({ target: `redis://127.0.0.1:${echoPort}` });
    expect(through.target).toEqual({ host: '127.0.0.1', port: echoPort });
    const { socket, received } = await echoClient(through);
    socket.write('ping');
    await until(() => received().length === 4);
    socket.destroy();
  });

  it('validates retarget() like the target option, and a rejected target changes nothing', async () => {
    const through = await proxy({ target: { port: echoPort } });
    const bad: unknown[] = [
      'not a url',
      'http://127.0.0.1/',
      'mysql://u:hunter2@h/db',
      { port: 0 },
      { port: 1, host: '' },
    ];
    for (const target of bad) {
      expect(() => through.retarget(target as string)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    }
    expect(() => through.retarget({ port: 1 }, { resetExisting: 'no' as never })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('resetExisting') }),
    );
    expect(() => through.retarget('mysql://u:hunter2@h/db')).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('hunter2') }),
    );
    expect(through.target).toEqual({ host: '127.0.0.1', port: echoPort });

    through.retarget('postgresql://bob@[::1]/app');
    expect(through.target).toEqual({ host: '::1', port: 5432 });
    through.retarget({ host: 'localhost', port: 6379 });
    expect(through.target).toEqual({ host: 'localhost', port: 6379 });
  });

  it('validates setLatency() arguments synchronously', async () => {
    const through = await proxy({ target: { port: echoPort } });
    expect(() => through.setLatency(-1)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => through.setLatency(10, 'sideways' as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    );
    expect(through.latencyMs).toBe(0);
  });
});
