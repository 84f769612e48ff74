import { invalidOption, LaglessError } from './errors.js';

/** Capped exponential backoff with jitter, e.g. between probes of a replica that is down. */
export interface BackoffOptions {
  /**
   * Delay before the first retry, in milliseconds (> 0).
   * @default 250
   */
  initialMs: number;
  /**
   * Upper bound on any delay, in milliseconds (>= initialMs).
   * @default 30_000
   */
  maxMs: number;
  /**
   * Growth factor per attempt (>= 1; 1 means a constant delay).
   * @default 2
   */
  multiplier: number;
  /**
   * Fraction of each delay removed at random, from 0 (none) to 1 (anywhere down to zero), so that
   * many instances retrying the same replica do not probe it in lockstep.
   * @default 0.2
   */
  jitter: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 250,
  maxMs: 30_000,
  multiplier: 2,
  jitter: 0.2,
});

const FIELDS = Object.keys(DEFAULT_BACKOFF) as ReadonlyArray<keyof BackoffOptions>;

/**
 * Merges `options` over `DEFAULT_BACKOFF` and checks every field; `optionName` is where the object
 * sits in the caller's options (e.g. `'health.backoff'`), so errors point at what the user wrote.
 * An omitted or `undefined` field takes its default.
 */
export function validateBackoff(
  options: Partial<BackoffOptions> | undefined,
  optionName: string,
): Readonly<BackoffOptions> {
  if (options === undefined) return DEFAULT_BACKOFF;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidOption(optionName, 'an object { initialMs, maxMs, multiplier, jitter }', options);
  }
  for (const key of Object.keys(options)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      // A misspelt field would otherwise silently fall back to its default.
      throw new LaglessError(
        'INVALID_OPTION',
        `Unknown option ${optionName}.${key}; known fields are ${FIELDS.join(', ')}`,
        { context: { option: `${optionName}.${key}` } },
      );
    }
  }
  const merged: BackoffOptions = {
    initialMs: options.initialMs ?? DEFAULT_BACKOFF.initialMs,
    maxMs: options.maxMs ?? DEFAULT_BACKOFF.maxMs,
    multiplier: options.multiplier ?? DEFAULT_BACKOFF.multiplier,
    jitter: options.jitter ?? DEFAULT_BACKOFF.jitter,
  };
  const { initialMs, maxMs, multiplier, jitter } = merged;
  if (!isFiniteNumber(initialMs) || initialMs <= 0) {
    throw invalidOption(`${optionName}.initialMs`, 'a finite number of milliseconds > 0', initialMs);
  }
  if (!isFiniteNumber(maxMs) || maxMs < initialMs) {
    throw invalidOption(`${optionName}.maxMs`, `a finite number of milliseconds >= initialMs (${initialMs})`, maxMs);
  }
  if (!isFiniteNumber(multiplier) || multiplier < 1) {
    throw invalidOption(`${optionName}.multiplier`, 'a finite number >= 1', multiplier);
  }
  if (!isFiniteNumber(jitter) || jitter < 0 || jitter > 1) {
    throw invalidOption(`${optionName}.jitter`, 'a number from 0 to 1', jitter);
  }
  return Object.freeze(merged);
}

/**
 * The delay before retry number `attempt` (0-based):
 * `min(maxMs, initialMs * multiplier ** attempt) * (1 - jitter * random())`.
 * Huge attempts give `maxMs` (the power overflows to Infinity, which the cap absorbs); negative or
 * NaN attempts count as 0. `options` is expected to have passed `validateBackoff`.
 *
 * @param random source of uniform numbers in [0, 1); @default Math.random
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const { initialMs, maxMs, multiplier, jitter } = options;
  const exponent = attempt > 0 ? attempt : 0;
  const raw = initialMs * multiplier ** exponent;
  // Written so that NaN (e.g. 0 * Infinity from unvalidated options) also lands on the cap.
  const capped = raw < maxMs ? raw : maxMs;
  return jitter === 0 ? capped : capped * (1 - jitter * random());
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}
