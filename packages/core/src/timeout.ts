import { LaglessError } from './errors.js';

/**
 * Settles with `work`, or rejects with QUERY_TIMEOUT after `ms`. The work itself cannot be
 * cancelled generically; its late outcome is swallowed so it never becomes an unhandled rejection.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      work.catch(() => {});
      reject(
        new LaglessError('QUERY_TIMEOUT', `${what} did not answer within ${ms} ms`, { context: { timeoutMs: ms } }),
      );
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
