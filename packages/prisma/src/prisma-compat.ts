import { invalidOption, LaglessError, showValue } from '@lagless/core';
import type { SqlDriverAdapterFactory } from './driver-types.js';

/*
 * The only module that touches what Prisma does not document. Each function feature-detects the
 * internal it reads and throws a LaglessError naming it when a Prisma release moved it, instead of
 * routing wrongly in silence. test/prisma-compat.test.ts pins each of them against the installed
 * Prisma, so an upgrade that changes one fails there first.
 */

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isFactory(value: unknown): value is SqlDriverAdapterFactory {
  return isObject(value) && typeof value.connect === 'function' && typeof value.provider === 'string';
}

/** Prisma moved an internal we read: say which, rather than route wrongly in silence. */
function unsupported(internal: string, received: unknown): LaglessError {
  return new LaglessError(
    'UNSUPPORTED_VERSION',
    `@lagless/prisma reads ${internal} of Prisma 7 and found ${showValue(received)}: this Prisma version is not supported`,
    { context: { internal } },
  );
}

/**
 * The driver adapter factory a PrismaClient was created with (`new PrismaClient({ adapter })`), for
 * a client built without one (Accelerate) undefined. Prisma keeps it in the client's private
 * `_engineConfig`; extended clients reach it through their proxy.
 */
export function clientAdapterFactory(client: unknown, option: string): SqlDriverAdapterFactory | undefined {
  if (!isObject(client)) throw invalidOption(option, 'a PrismaClient', client);
  const config = client._engineConfig;
  if (!isObject(config)) {
    throw invalidOption(
      option,
      'a Prisma 7 client (its private `_engineConfig`, where Prisma keeps the adapter)',
      config,
    );
  }
  const adapter = config.adapter;
  if (adapter === undefined || adapter === null) return undefined;
  if (!isFactory(adapter)) throw invalidOption(option, 'a driver adapter in `_engineConfig.adapter`', adapter);
  return adapter;
}

/**
 * True when a query extension's operation runs inside a `$transaction` (interactive or batch): its
 * statements then go to the transaction's connection whatever we decide. Prisma passes this only in
 * the private `__internalParams` (the official extension reads it there too).
 */
export function operationInTransaction(params: object): boolean {
  const internal = (params as { __internalParams?: unknown }).__internalParams;
  if (!isObject(internal)) throw unsupported("a query extension's `__internalParams`", internal);
  return Boolean(internal.transaction);
}

/**
 * True for the client an interactive transaction hands its callback: Prisma denies `$extends`
 * there (and keeps `$transaction`, for nested savepoints), so that is how one is told apart.
 */
export function isTransactionClient(context: object): boolean {
  return typeof (context as { $extends?: unknown }).$extends !== 'function';
}
