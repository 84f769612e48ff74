// Input validation and the pure parts of routing, without a database.
import { isLaglessError, ROUTER_OPTION_NAMES } from '@lagless/core';
import { PrismaPg } from '@prisma/adapter-pg';
import { describe, expect, it } from 'vitest';
import { laglessAdapter, readReplicas } from '../src/index.js';
import { isReadOnlySql } from '../src/operations.js';
import { InflightReads } from '../src/route-context.js';
import { PrismaClient } from './generated/client.js';

const url = 'postgres://u:p@127.0.0.1:1/db';
const pg = () => new PrismaPg({ connectionString: url });

function invalid(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(isLaglessError(caught, 'INVALID_OPTION'), String(caught)).toBe(true);
  expect(String(caught)).toMatch(message);
}

describe('laglessAdapter options', () => {
  it('rejects what is not a driver adapter, naming the option', () => {
    invalid(
      () => laglessAdapter(undefined as never),
      /Invalid option laglessAdapter\(options\): expected an object, received undefined/,
    );
    invalid(
      () => laglessAdapter({ primary: 'postgres://x' as never }),
      /Invalid option primary: expected a Prisma driver adapter .* received "postgres:\/\/x"/,
    );
    invalid(
      () => laglessAdapter({ primary: pg(), replicas: [pg(), {} as never] }),
      /Invalid option replicas\[1\]: expected a Prisma driver adapter/,
    );
    invalid(
      () => laglessAdapter({ primary: pg(), replicas: pg() as never }),
      /Invalid option replicas: expected an array of driver adapters/,
    );
    invalid(
      () => laglessAdapter({ primary: { name: '', adapter: pg() } }),
      /Invalid option primary\.name: expected a non-empty string, received ""/,
    );
  });

  it('validates router options eagerly (core messages)', () => {
    invalid(() => laglessAdapter({ primary: pg(), waitTimeoutMs: -1, probeIntervalMs: 0 }), /waitTimeoutMs/);
    invalid(
      () =>
        laglessAdapter({
          primary: { name: 'a', adapter: pg() },
          replicas: [{ name: 'a', adapter: pg() }],
          probeIntervalMs: 0,
        }),
      /distinct names/,
    );
  });

  it('names nodes by default and keeps given names', async () => {
    const adapter = laglessAdapter({
      primary: pg(),
      replicas: [pg(), { name: 'eu', adapter: pg(), weight: 2 }],
      probeIntervalMs: 0,
    });
    expect(adapter.router.stats().primary.name).toBe('primary');
    expect(adapter.router.stats().replicas.map((r) => r.name)).toEqual(['replica-0', 'eu']);
    await adapter.dispose();
  });
});

describe('readReplicas options', () => {
  it('needs replicas or a lagless adapter', () => {
    invalid(() => new PrismaClient({ adapter: pg() }).$extends(readReplicas()), /laglessAdapter/);
  });

  it('refuses router options on the fast path (they belong to laglessAdapter)', () => {
    const client = new PrismaClient({ adapter: laglessAdapter({ primary: pg(), probeIntervalMs: 0 }) });
    invalid(
      () => client.$extends(readReplicas({ balancer: 'random' })),
      /Invalid option balancer: expected no router option here: with laglessAdapter\(\), pass balancer to laglessAdapter\(\)/,
    );
  });

  it('drop-in path: every router option reaches the router (core’s list of names, checked against RouterOptions)', () => {
    // A value no option accepts: the router's own validation naming the option proves it arrived.
    for (const name of ROUTER_OPTION_NAMES) {
      invalid(
        () => new PrismaClient({ adapter: pg() }).$extends(readReplicas({ replicas: [], [name]: Symbol(name) })),
        new RegExp(`Invalid option ${name}(\\W|$)`),
      );
    }
  });

  it('rejects a bad rawQueries value', () => {
    invalid(() => readReplicas({ rawQueries: 'sometimes' as never }), /rawQueries/);
  });
});

describe('statements without a routing context', () => {
  it('only plain reads count as reads', () => {
    expect(isReadOnlySql('SELECT "t0"."id" FROM "public"."User" AS "t0" WHERE "t0"."id" IN ($1,$2)')).toBe(true);
    expect(isReadOnlySql('  /* c */ WITH x AS (SELECT 1) SELECT * FROM x')).toBe(true);
    expect(isReadOnlySql('SELECT * FROM "User" FOR UPDATE')).toBe(false);
    expect(isReadOnlySql('WITH d AS (DELETE FROM "User" RETURNING *) SELECT * FROM d')).toBe(false);
    expect(isReadOnlySql('INSERT INTO "User" (email) VALUES ($1) RETURNING id')).toBe(false);
    expect(isReadOnlySql('UPDATE "User" SET name = $1')).toBe(false);
  });
});

describe('in-flight read requirements', () => {
  it('the strictest wins; primary beats any LSN', async () => {
    const reads = new InflightReads();
    expect(await reads.strictest()).toBe(0n);
    const a = reads.add(5n);
    const b = reads.add(Promise.resolve(9n));
    expect(await reads.strictest()).toBe(9n);
    const c = reads.add('primary');
    expect(await reads.strictest()).toBe('primary');
    c();
    b();
    expect(await reads.strictest()).toBe(5n);
    a();
    expect(reads.size).toBe(0);
  });
});
