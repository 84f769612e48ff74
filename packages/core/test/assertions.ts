// Shared by the core unit tests: error assertions and deterministic random numbers.
import { expect } from 'vitest';
import { seededRandom } from '../src/balancers.js';
import { isLaglessError, type LaglessError, type LaglessErrorCode } from '../src/errors.js';

export function expectCode(error: unknown, code: LaglessErrorCode): void {
  expect(isLaglessError(error, code), `expected LaglessError ${code}, got ${String(error)}`).toBe(true);
}

/** The LaglessError with `code` that `fn` throws; fails the test if it throws anything else or nothing. */
export function thrown(fn: () => unknown, code: LaglessErrorCode): LaglessError {
  try {
    fn();
  } catch (error) {
    if (isLaglessError(error, code)) return error;
    throw new Error(`expected a LaglessError ${code}, got ${String(error)}`);
  }
  throw new Error(`expected a LaglessError ${code}, nothing was thrown`);
}

/** Runs `fn`, expects a LaglessError with `code`, and the message to contain each fragment. */
export function expectLaglessError(fn: () => unknown, code: LaglessErrorCode, ...fragments: string[]): void {
  const error = thrown(fn, code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
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
