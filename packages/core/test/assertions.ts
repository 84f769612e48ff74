// Shared by the core unit tests: error assertions and deterministic random numbers.
import { expect } from 'vitest';
import { seededRandom } from '../src/balancers.js';
import { isLaglessError, type LaglessErrorCode } from '../src/errors.js';

export function expectCode(error: unknown, code: LaglessErrorCode): void {
  expect(isLaglessError(error, code), `expected LaglessError ${code}, got ${String(error)}`).toBe(true);
}

/** Runs `fn`, expects a LaglessError with `code`, and the message to contain each fragment. */
export function expectLaglessError(fn: () => unknown, code: LaglessErrorCode, ...fragments: string[]): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expectCode(thrown, code);
  for (const fragment of fragments) expect((thrown as Error).message).toContain(fragment);
}

export function expectInvalidOption(fn: () => unknown, ...fragments: string[]): void {
  expectLaglessError(fn, 'INVALID_OPTION', ...fragments);
}

export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Deterministic unsigned 32-bit integers, so a failing case can be reproduced. */
export function uint32s(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() * 4294967296;
}

export function random64(next: () => number): bigint {
  return (BigInt(next()) << 32n) | BigInt(next());
}
