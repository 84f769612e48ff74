// Type-level tests (checked by `tsc -p tsconfig.tests.json`; the runtime part only builds clients).
import type { LaglessHandle, RouterStats } from '@lagless/core';
import { PrismaPg } from '@prisma/adapter-pg';
import { describe, expectTypeOf, it } from 'vitest';
import { type LaglessAdapter, laglessAdapter, readReplicas } from '../src/index.js';
import { PrismaClient, type User } from './generated/client.js';

const url = 'postgres://u:p@127.0.0.1:1/db';

function fast() {
  const adapter = laglessAdapter({
    primary: new PrismaPg({ connectionString: url }),
    replicas: [],
    probeIntervalMs: 0,
  });
  return new PrismaClient({ adapter }).$extends(readReplicas());
}

describe('types', () => {
  it('laglessAdapter() is a driver adapter factory PrismaClient accepts', () => {
    expectTypeOf(laglessAdapter).returns.toEqualTypeOf<LaglessAdapter>();
    expectTypeOf<ConstructorParameters<typeof PrismaClient>[0]>().toHaveProperty('adapter');
  });

  it('the extended client keeps every model type', () => {
    const prisma = fast();
    expectTypeOf(prisma.user.findUnique({ where: { id: 1 } })).resolves.toEqualTypeOf<User | null>();
    expectTypeOf(prisma.user.findMany()).resolves.toEqualTypeOf<User[]>();
    expectTypeOf(prisma.user.count()).resolves.toEqualTypeOf<number>();
    expectTypeOf(prisma.post.findFirst({ include: { author: true } })).resolves.toMatchTypeOf<{
      author: User;
    } | null>();
    // @ts-expect-error unknown field
    void prisma.user.findMany({ where: { nope: 1 } });
  });

  it('$primary() and $replica() are typed clients', () => {
    const prisma = fast();
    expectTypeOf(prisma.$primary().user.findMany()).resolves.toEqualTypeOf<User[]>();
    expectTypeOf(prisma.$replica().user.findUnique({ where: { email: 'a' } })).resolves.toEqualTypeOf<User | null>();
    expectTypeOf(prisma.$primary()).not.toHaveProperty('$primary');
  });

  it('$lagless exposes stats, session and token', () => {
    const prisma = fast();
    // The one surface of every adapter, typed once in core.
    expectTypeOf(prisma.$lagless).toEqualTypeOf<LaglessHandle<unknown>>();
    expectTypeOf(prisma.$lagless.stats()).toEqualTypeOf<RouterStats>();
    // Wrapped in functions that never run: these calls would reach for a database.
    expectTypeOf(() => prisma.$lagless.token()).returns.resolves.toEqualTypeOf<string | undefined>();
    expectTypeOf(() => prisma.$lagless.session(async () => 1)).returns.resolves.toEqualTypeOf<number>();
    expectTypeOf(() => prisma.$lagless.session({ token: 'x' }, () => 'a')).returns.resolves.toEqualTypeOf<string>();
  });

  it('computed fields of other extensions stay typed in both orders', () => {
    const label = {
      result: { user: { label: { needs: { name: true }, compute: (u: { name: string }) => u.name } } },
    } as const;
    const before = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) })
      .$extends(label)
      .$extends(readReplicas({ replicas: [] }));
    const after = fast().$extends(label);
    const onBefore = () => before.user.findFirstOrThrow();
    expectTypeOf<Awaited<ReturnType<typeof onBefore>>['label']>().toEqualTypeOf<string>();
    expectTypeOf<Awaited<ReturnType<typeof onBefore>>['email']>().toEqualTypeOf<User['email']>();
    const onReplica = () => after.$replica().user.findFirstOrThrow();
    expectTypeOf<Awaited<ReturnType<typeof onReplica>>['label']>().toEqualTypeOf<string>();
  });
});
