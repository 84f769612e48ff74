import type { PrismaClientOptions } from '@prisma/client/runtime/client';

/*
 * Prisma's driver adapter interfaces, taken from @prisma/client's own declarations (a peer
 * dependency) so that a LaglessAdapter is exactly what `new PrismaClient({ adapter })` accepts,
 * without depending on the internal @prisma/driver-adapter-utils package.
 */

/** What `new PrismaClient({ adapter })` takes: `PrismaPg` is one. */
export type SqlDriverAdapterFactory = NonNullable<Extract<PrismaClientOptions, { adapter: unknown }>['adapter']>;
export type SqlDriverAdapter = Awaited<ReturnType<SqlDriverAdapterFactory['connect']>>;
export type SqlQuery = Parameters<SqlDriverAdapter['queryRaw']>[0];
export type SqlResultSet = Awaited<ReturnType<SqlDriverAdapter['queryRaw']>>;
export type SqlQueryable = Pick<SqlDriverAdapter, 'provider' | 'adapterName' | 'queryRaw' | 'executeRaw'>;
export type Transaction = Awaited<ReturnType<SqlDriverAdapter['startTransaction']>>;
export type IsolationLevel = NonNullable<Parameters<SqlDriverAdapter['startTransaction']>[0]>;
export type ConnectionInfo = ReturnType<NonNullable<SqlDriverAdapter['getConnectionInfo']>>;
