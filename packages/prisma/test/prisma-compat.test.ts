// The contract of src/prisma-compat.ts with the installed Prisma: each private field we read is
// where we read it, holding what we expect. A Prisma upgrade that moves one fails here, by name,
// before any routing test fails for a reason harder to see.
import { isLaglessError } from '@lagless/core';
import { type Cluster, startCluster } from '@lagless/testkit';
import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma } from '@prisma/client/extension';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAdapterFactory, isTransactionClient, operationInTransaction } from '../src/prisma-compat.js';
import { PrismaClient } from './generated/client.js';
import { applySchema } from './helpers.js';

const offline = 'postgres://u:p@127.0.0.1:1/db';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('clientAdapterFactory: `_engineConfig.adapter`', () => {
  it('is the factory the client was created with, on plain, extended and extension-context clients', () => {
    const factory = new PrismaPg({ connectionString: offline });
    const client = new PrismaClient({ adapter: factory });
    expect(clientAdapterFactory(client, 'c')).toBe(factory);
    const extended = client.$extends({ query: { $allOperations: ({ args, query }) => query(args) } });
    expect(clientAdapterFactory(extended, 'c')).toBe(factory);
    let inExtension: unknown;
    client.$extends(
      Prisma.defineExtension((base) => {
        inExtension = clientAdapterFactory(base, 'c');
        return base;
      }),
    );
    expect(inExtension).toBe(factory);
  });

  it('fails loudly, naming the option and the internal, when the field is gone', () => {
    const error = caught(() => clientAdapterFactory({ $connect() {} }, 'replicas[0]'));
    expect(isLaglessError(error, 'INVALID_OPTION')).toBe(true);
    expect(String(error)).toMatch(/Invalid option replicas\[0\]: .*`_engineConfig`.*received undefined/);
    const wrong = caught(() => clientAdapterFactory({ _engineConfig: { adapter: 'pg' } }, 'replicas[1]'));
    expect(String(wrong)).toMatch(/Invalid option replicas\[1\]: expected a driver adapter in `_engineConfig.adapter`/);
    // A client configured without a driver adapter is not Prisma moving a field: no factory, no error.
    expect(clientAdapterFactory({ _engineConfig: {} }, 'x')).toBeUndefined();
  });
});

describe('with a database', () => {
  let cluster: Cluster;
  let client: PrismaClient;

  beforeAll(async () => {
    cluster = await startCluster({ replicas: 0 });
    await applySchema(cluster);
    client = new PrismaClient({ adapter: new PrismaPg({ connectionString: cluster.primary.url }) });
  });

  afterAll(async () => {
    await client?.$disconnect();
    await cluster?.stop();
  });

  it('operationInTransaction: `__internalParams.transaction` is set inside interactive and batch transactions only', async () => {
    const seen: Array<[string, boolean]> = [];
    const prisma = client.$extends({
      query: {
        $allOperations(params) {
          seen.push([params.operation, operationInTransaction(params)]);
          return params.query(params.args);
        },
      },
    });
    await prisma.user.findMany();
    await prisma.$queryRaw`SELECT 1`;
    await prisma.$transaction(async (tx) => {
      await tx.user.count();
      await tx.$executeRaw`SELECT 1`;
    });
    await prisma.$transaction([prisma.user.findFirst(), prisma.user.deleteMany({ where: { id: -1 } })]);
    expect(seen).toEqual([
      ['findMany', false],
      ['$queryRaw', false],
      ['count', true],
      ['$executeRaw', true],
      ['findFirst', true],
      ['deleteMany', true],
    ]);
  });

  it('operationInTransaction fails loudly when Prisma stops passing `__internalParams`', () => {
    const error = caught(() => operationInTransaction({ operation: 'findMany', args: {} }));
    expect(isLaglessError(error, 'UNSUPPORTED_VERSION')).toBe(true);
    expect(String(error)).toMatch(
      /`__internalParams` of Prisma 7 and found undefined: this Prisma version is not supported/,
    );
  });

  it('isTransactionClient: an interactive transaction’s client has no $extends, other clients have', async () => {
    expect(isTransactionClient(client)).toBe(false);
    expect(isTransactionClient(client.$extends({}))).toBe(false);
    const inside = await client.$transaction(async (tx) => isTransactionClient(tx));
    expect(inside).toBe(true);
  });
});
