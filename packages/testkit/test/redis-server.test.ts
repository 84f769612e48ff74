import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { isTestkitError } from '../src/errors.js';
import { type RedisServer, startRedis } from '../src/index.js';
import { freePort } from '../src/ports.js';
import { resolveRedisBinary } from '../src/redis-server.js';
import { canListen, runScript, waitFor } from './helpers.js';

const servers: RedisServer[] = [];

afterAll(async () => {
  await Promise.all(servers.map((server) => server.kill()));
});

async function started(options?: Parameters<typeof startRedis>[0]): Promise<RedisServer> {
  const server = await startRedis(options);
  servers.push(server);
  return server;
}

/** Sends one inline command over a raw socket and resolves with the first reply line. */
function command(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setEncoding('utf8');
    socket.setTimeout(5_000, () => socket.destroy(new Error('no reply within 5 s')));
    socket.once('connect', () => socket.write(`${text}\r\n`));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      const end = reply.indexOf('\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(reply.slice(0, end));
      }
    });
    socket.once('error', reject);
  });
}

function answersPing(port: number): Promise<boolean> {
  return command(port, 'PING').then(
    (reply) => reply === '+PONG',
    () => false,
  );
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('startRedis', () => {
  it('starts a server that answers PING on loopback', async () => {
    const server = await started();
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await command(server.port, 'PING')).toBe('+PONG');
  });

  it('runs without persistence', async () => {
    const server = await started();
    const replies = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: server.port });
      let reply = '';
      socket.setEncoding('utf8');
      socket.once('connect', () => socket.write('CONFIG GET appendonly\r\nCONFIG GET save\r\n'));
      socket.on('data', (chunk: string) => {
        reply += chunk;
        if (reply.split('\r\n').length >= 11) {
          socket.destroy();
          resolve(reply);
        }
      });
      socket.once('error', reject);
    });
    expect(replies.split('\r\n')).toEqual(['*2', '$10', 'appendonly', '$2', 'no', '*2', '$4', 'save', '$0', '', '']);
  });

  it('stops, starts again on the same port, and kills', async () => {
    const server = await started();
    const { port } = server;
    await server.stop();
    expect(await answersPing(port)).toBe(false);
    expect(await canListen(port)).toBe(true);

    await server.start();
    expect(server.port).toBe(port);
    expect(await answersPing(port)).toBe(true);

    await server.kill();
    expect(await answersPing(port)).toBe(false);
    expect(await canListen(port)).toBe(true);

    await server.start();
    expect(await answersPing(port)).toBe(true);
    await server.stop();
    // Stopping or killing a stopped server is a no-op.
    await server.stop();
    await server.kill();
  });

  it('comes back empty after kill() or stop() and start(): nothing persists', async () => {
    const server = await started();
    expect(await command(server.port, 'SET survivor yes')).toBe('+OK');
    await server.kill();
    await server.start();
    expect(await command(server.port, 'EXISTS survivor')).toBe(':0');
    expect(await command(server.port, 'DBSIZE')).toBe(':0');

    expect(await command(server.port, 'SET survivor yes')).toBe('+OK');
    await server.stop();
    await server.start();
    expect(await command(server.port, 'DBSIZE')).toBe(':0');
  });

  it('is idempotent on start while running', async () => {
    const server = await started();
    await server.start();
    expect(await answersPing(server.port)).toBe(true);
  });

  it('stops on await using (asyncDispose)', async () => {
    const server = await started();
    await server[Symbol.asyncDispose]();
    expect(await answersPing(server.port)).toBe(false);
  });

  it('listens on a requested port', async () => {
    const port = await freePort();
    const server = await started({ port });
    expect(server.port).toBe(port);
    expect(await answersPing(port)).toBe(true);
  });

  it('fails with START_FAILED and the server log when the requested port is taken', async () => {
    const holder = await started();
    const error = await rejection(startRedis({ port: holder.port }));
    expect(isTestkitError(error) && error.code).toBe('START_FAILED');
    expect((error as Error).message).toMatch(/address already in use/i);
  });

  it.each([0, 70_000, 1.5])('rejects port %s', async (port) => {
    const error = await rejection(startRedis({ port }));
    expect(isTestkitError(error) && error.code).toBe('INVALID_OPTION');
  });

  it('is killed when the process that started it exits', async () => {
    const script =
      "import { startRedis } from './packages/testkit/src/redis-server.ts';" +
      'const server = await startRedis(); console.log(server.port);';
    const { code, stdout: output } = await runScript(script);
    expect(code).toBe(0);
    const port = Number(output.trim());
    expect(port).toBeGreaterThan(0);
    await waitFor('the orphaned port to be freed', () => canListen(port), 5_000);
    expect(await answersPing(port)).toBe(false);
  });
});

describe('resolveRedisBinary', () => {
  it('finds redis-server on PATH or in the fallback directories', () => {
    expect(resolveRedisBinary()).toMatch(/redis-server$/);
  });

  it('fails with BINARIES_NOT_FOUND and an install hint when there is none', () => {
    let thrown: unknown;
    try {
      resolveRedisBinary(undefined, { PATH: '/nonexistent' }, []);
    } catch (error) {
      thrown = error;
    }
    expect(isTestkitError(thrown) && thrown.code).toBe('BINARIES_NOT_FOUND');
    expect((thrown as Error).message).toMatch(/apt-get install redis-server/);
  });

  it('rejects an explicit binary that is not executable', async () => {
    const error = await rejection(startRedis({ binary: '/nonexistent/redis-server' }));
    expect(isTestkitError(error) && error.code).toBe('BINARIES_NOT_FOUND');
  });
});
