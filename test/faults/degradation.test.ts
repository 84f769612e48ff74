// Degradation is loud: a replica that cannot be used (here, a wrong password) is named by ready()
// with the server's own code, warned about on stderr when nobody listens, and silent only on request.
// The router keeps serving through the rest meanwhile.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isLaglessError, type RouterEvents } from '@lagless/core';
import { laglessAdapter, readReplicas } from '@lagless/prisma';
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrismaClient } from '../../packages/prisma/test/generated/client.js';
import { describeReport, type Instance, instance, runReaders } from './load.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

let cluster: Cluster;
const instances: Instance[] = [];

function withWrongPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = 'not-the-password';
  return parsed.toString();
}

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.primary.query(
    'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)',
  );
  await cluster.primary.query(`INSERT INTO "User" (email, name) VALUES ('a@x', 'a')`);
  await cluster.waitForReplicas();
});

afterAll(async () => {
  for (const one of instances) await one.close();
  await cluster?.stop();
});

describe('a replica with a wrong password', () => {
  it('ready() rejects naming it and the server code, while the other replica serves every read', async () => {
    const [good, bad] = cluster.replicas;
    if (!good || !bad) throw new Error('two replicas expected');
    const app = instance(cluster, { replicaUrls: [good.url, withWrongPassword(bad.url)] });
    instances.push(app);
    const down: Array<RouterEvents['replica-down']> = [];
    app.router.on('replica-down', (event) => down.push(event));
    const error = await app.router.ready().catch((e: unknown) => e);
    expect(isLaglessError(error, 'REPLICA_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(
      new RegExp(`replica "${bad.name}": password authentication failed for user "postgres" \\(28P01\\)`),
    );
    expect((error as Error).message).not.toContain('not-the-password');
    expect(app.router.failures()).toEqual([
      expect.objectContaining({ node: bad.name, role: 'replica', code: '28P01' }),
    ]);

    let done = false;
    setTimeout(() => {
      done = true;
    }, 1500).unref();
    const report = await runReaders(
      8,
      async () =>
        app.router.read(async (pool) => {
          const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port');
          return { port: Number(rows[0]?.port), stale: false };
        }),
      () => done,
    );
    console.log(`wrong password, 8 readers for 1.5 s: ${describeReport(report)}`);
    expect(report.failed).toBe(0);
    expect(report.reads).toBeGreaterThan(0);
    expect([...report.byPort.keys()]).toEqual([good.port]);
    // Readmission keeps being tried with backoff; it keeps failing, and is reported each time it is found down.
    expect(down.length).toBeGreaterThanOrEqual(1);
    expect(down[0]).toMatchObject({ replica: bad.name, code: '28P01' });
  });

  it('through the Prisma adapter, events and ready() carry the server code and the node name', async () => {
    const [good, bad] = cluster.replicas;
    if (!good || !bad) throw new Error('two replicas expected');
    const adapter = laglessAdapter({
      primary: new PrismaPg({ connectionString: cluster.primary.url }),
      replicas: [
        { name: 'good', adapter: new PrismaPg({ connectionString: good.url }) },
        { name: 'locked-out', adapter: new PrismaPg({ connectionString: withWrongPassword(bad.url) }) },
      ],
      logger: false,
    });
    const prisma = new PrismaClient({ adapter }).$extends(readReplicas());
    try {
      const down: Array<RouterEvents['replica-down']> = [];
      prisma.$lagless.router.on('replica-down', (event) => down.push(event));
      const error = await prisma.$lagless.ready().catch((e: unknown) => e);
      expect((error as Error).message).toContain(
        'replica "locked-out": password authentication failed for user "postgres" (28P01)',
      );
      expect(await prisma.user.count()).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(down[0]).toMatchObject({ replica: 'locked-out', code: '28P01' });
      expect((down[0]?.error as { node?: string } | undefined)?.node).toBe('locked-out');
    } finally {
      await prisma.$disconnect();
    }
  });

  it('warns on stderr when nobody listens, and says nothing with logger: false', async () => {
    const [good, bad] = cluster.replicas;
    if (!good || !bad) throw new Error('two replicas expected');
    // A real process, so what reaches its stderr is what an operator would see.
    const script = `
      import { createRouter } from '@lagless/core';
      import { pgNode } from '@lagless/core/pg';
      const logger = process.env.LOGGER === 'false' ? { logger: false } : {};
      const nodes = [pgNode('primary', process.env.PRIMARY), pgNode('replica1', process.env.GOOD), pgNode('replica2', process.env.BAD)];
      const router = createRouter({ primary: nodes[0], replicas: nodes.slice(1), ...logger });
      const read = await router.read((pool) => pool.query('SELECT 1 AS one'));
      await router.ready().catch(() => {});
      await router.close();
      await Promise.all(nodes.map((node) => node.end()));
      console.log('read', read.rows[0].one);
    `;
    const env = {
      ...process.env,
      PRIMARY: cluster.primary.url,
      GOOD: good.url,
      BAD: withWrongPassword(bad.url),
    };
    const exec = (logger: string) =>
      run(
        process.execPath,
        ['--conditions=lagless-source', '--import', 'tsx', '--input-type=module', '--eval', script],
        { cwd: root, env: { ...env, LOGGER: logger }, timeout: 30_000 },
      );
    const loud = await exec('default');
    expect(loud.stdout.trim()).toBe('read 1');
    expect(loud.stderr).toMatch(
      /^\[lagless\] replica "replica2" is down: password authentication failed for user "postgres" \(28P01\); /m,
    );
    expect(loud.stderr).not.toContain('not-the-password');
    const quiet = await exec('false');
    expect(quiet.stdout.trim()).toBe('read 1');
    expect(quiet.stderr).toBe('');
  });
});
