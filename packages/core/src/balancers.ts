import { invalidOption, LaglessError, showValue } from './errors.js';

/** What a balancer sees of one replica. The pool owns these objects and updates them in place. */
export interface BalancerCandidate {
  readonly name: string;
  /** Reads currently running on this replica. */
  readonly inFlight: number;
  /** Peak-EWMA latency of recent reads in milliseconds; 0 while nothing has been measured. */
  readonly latencyScoreMs: number;
  /**
   * Time-decayed average latency in milliseconds, steadier than the peak score: least-connections
   * breaks ties with it (with `latencyScoreMs` when absent). One slow read should not make a
   * replica lose every tie for the next ten seconds.
   */
  readonly averageLatencyMs?: number;
  /** Relative share for the `weighted` balancer: a finite number > 0 (1 unless configured). */
  readonly weight: number;
}

export type BalancerName = 'least-connections' | 'latency' | 'round-robin' | 'random' | 'weighted';

/**
 * A user's own replica choice. It may return the candidate itself or its name; anything else throws
 * `INVALID_OPTION`. It is called only when there are at least two candidates, must be synchronous,
 * and should draw randomness from `random` so that seeded tests stay deterministic.
 */
export type BalancerFunction = (
  candidates: readonly BalancerCandidate[],
  random: () => number,
) => BalancerCandidate | string;

export interface Balancer {
  /** The built-in balancer's name, or `'custom'` for a user function. */
  readonly name: string;
  /**
   * Chooses one of `candidates`, which must not be empty: with no replica the router reads from
   * the primary and never asks a balancer. A single candidate is returned without drawing a random
   * number (or calling a user function).
   */
  pick<C extends BalancerCandidate>(candidates: readonly C[]): C;
}

export const BALANCER_NAMES: readonly BalancerName[] = Object.freeze([
  'least-connections',
  'latency',
  'round-robin',
  'random',
  'weighted',
]);

/**
 * Builds a balancer from a built-in name or a user function. `spec` is validated here, once, so a
 * typo fails at start-up rather than on the first read.
 *
 * @param random source of uniform numbers in [0, 1); @default Math.random. Pass `seededRandom(n)`
 *   for reproducible tests and benchmarks.
 */
export function createBalancer(spec: BalancerName | BalancerFunction, random: () => number = Math.random): Balancer {
  if (typeof random !== 'function') {
    throw invalidOption('random', 'a function returning numbers in [0, 1)', random);
  }
  if (typeof spec === 'function') return new CustomBalancer(spec, random);
  switch (spec) {
    case 'least-connections':
      return new LeastConnectionsBalancer(random);
    case 'latency':
      return new LatencyBalancer(random);
    case 'round-robin':
      return new RoundRobinBalancer();
    case 'random':
      return new RandomBalancer(random);
    case 'weighted':
      return new WeightedBalancer(random);
    default:
      throw invalidOption(
        'balancer',
        `one of ${BALANCER_NAMES.map((name) => `'${name}'`).join(', ')} or a function (candidates, random) => candidate | name`,
        spec,
      );
  }
}

/**
 * A deterministic generator of numbers in [0, 1) (mulberry32): small state, fast, and good enough
 * for load spreading, not for anything secret. The seed is truncated to 32 bits.
 */
export function seededRandom(seed: number): () => number {
  if (typeof seed !== 'number' || !Number.isFinite(seed)) {
    throw invalidOption('seed', 'a finite number', seed);
  }
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A tied replica this many times slower than the fastest tie is left out of the tie. Replicas
 * within the factor count as equal, so latency noise does not pile all load onto one of them.
 */
export const SLOW_TIE_FACTOR = 1.5;

/**
 * Strictly the least busy replica. Equals share the load, so none is favoured by its position;
 * among equals a clearly slower one is passed over: at low concurrency every replica is idle, and
 * in-flight counts alone cannot see that one of them answers in 5 ms instead of 0.5.
 */
class LeastConnectionsBalancer implements Balancer {
  readonly name = 'least-connections';
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
  }

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    let best = first;
    let min = first.inFlight;
    let ties = 1;
    let fastest = tieLatency(first);
    for (let i = 1; i < n; i++) {
      const candidate = candidates[i] as C;
      const inFlight = candidate.inFlight;
      if (inFlight < min) {
        best = candidate;
        min = inFlight;
        ties = 1;
        fastest = tieLatency(candidate);
      } else if (inFlight === min) {
        ties++;
        const latency = tieLatency(candidate);
        if (latency < fastest) fastest = latency;
      }
    }
    if (ties === 1) return best;
    // Unmeasured (0) scores give no basis to exclude anyone.
    const limit = fastest > 0 ? fastest * SLOW_TIE_FACTOR : Number.POSITIVE_INFINITY;
    let eligible = 0;
    for (let i = 0; i < n; i++) {
      const candidate = candidates[i] as C;
      if (candidate.inFlight === min && tieLatency(candidate) <= limit) eligible++;
    }
    // A second pass costs less than reservoir sampling, which would draw one random number per tie.
    let k = index(this.#random(), eligible);
    for (let i = 0; i < n; i++) {
      const candidate = candidates[i] as C;
      if (candidate.inFlight === min && tieLatency(candidate) <= limit && k-- === 0) return candidate;
    }
    return best;
  }
}

/**
 * Power of two choices over peak EWMA × (in-flight + 1): comparing two random replicas avoids the
 * herd that always picking the global best causes when scores are stale, yet never picks the worst.
 */
class LatencyBalancer implements Balancer {
  readonly name = 'latency';
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
  }

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    const i = index(this.#random(), n);
    // Drawing from the n - 1 others and skipping over i keeps the two draws distinct without a retry loop;
    // with two candidates the second draw is forced.
    let j = n === 2 ? 0 : index(this.#random(), n - 1);
    if (j >= i) j++;
    const a = candidates[i] as C;
    const b = candidates[j] as C;
    const scoreA = a.latencyScoreMs * (a.inFlight + 1);
    const scoreB = b.latencyScoreMs * (b.inFlight + 1);
    return scoreB < scoreA || (scoreB === scoreA && b.inFlight < a.inFlight) ? b : a;
  }
}

class RoundRobinBalancer implements Balancer {
  readonly name = 'round-robin';
  #next = 0;

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    // Reducing modulo the current length keeps the position valid when replicas leave between picks,
    // and storing the reduced value keeps the counter from growing without bound.
    const i = this.#next % n;
    this.#next = i + 1;
    return candidates[i] as C;
  }
}

class RandomBalancer implements Balancer {
  readonly name = 'random';
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
  }

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    return candidates[index(this.#random(), n)] as C;
  }
}

class WeightedBalancer implements Balancer {
  readonly name = 'weighted';
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
  }

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    let total = 0;
    for (let i = 0; i < n; i++) total += usableWeight((candidates[i] as C).weight);
    // Weights are validated where replicas are configured; if none is usable here, spreading
    // evenly beats failing a read.
    if (!(total > 0 && total < Number.POSITIVE_INFINITY)) return candidates[index(this.#random(), n)] as C;
    let r = this.#random() * total;
    let last = first;
    for (let i = 0; i < n; i++) {
      const candidate = candidates[i] as C;
      const weight = usableWeight(candidate.weight);
      if (weight === 0) continue;
      if (r < weight) return candidate;
      r -= weight;
      last = candidate;
    }
    // Rounding in the running subtraction can leave r a hair above the final weight.
    return last;
  }
}

class CustomBalancer implements Balancer {
  readonly name = 'custom';
  readonly #choose: BalancerFunction;
  readonly #random: () => number;

  constructor(choose: BalancerFunction, random: () => number) {
    this.#choose = choose;
    this.#random = random;
  }

  pick<C extends BalancerCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    const first = candidates[0];
    if (first === undefined) return noCandidates();
    if (n === 1) return first;
    const chosen: unknown = this.#choose(candidates, this.#random);
    if (typeof chosen === 'string') {
      for (let i = 0; i < n; i++) if ((candidates[i] as C).name === chosen) return candidates[i] as C;
    } else {
      for (let i = 0; i < n; i++) if (candidates[i] === chosen) return candidates[i] as C;
    }
    throw notACandidate(chosen, candidates);
  }
}

/** Maps a number from [0, 1) to an index below n, staying in range if a custom source returns 1, < 0 or NaN. */
function tieLatency(candidate: BalancerCandidate): number {
  return candidate.averageLatencyMs ?? candidate.latencyScoreMs;
}

function index(r: number, n: number): number {
  const i = Math.floor(r * n);
  return i >= n ? n - 1 : i > 0 ? i : 0;
}

function usableWeight(weight: number): number {
  return weight > 0 && weight < Number.POSITIVE_INFINITY ? weight : 0;
}

function noCandidates(): never {
  throw new LaglessError(
    'NO_REPLICA_AVAILABLE',
    'Balancer.pick() was called with no candidates; with no replica available, read from the primary instead',
  );
}

function notACandidate(chosen: unknown, candidates: readonly BalancerCandidate[]): LaglessError {
  const names = candidates.map((candidate) => candidate.name);
  const chosenName = typeof chosen === 'object' && chosen !== null ? (chosen as { name?: unknown }).name : undefined;
  const isThenable =
    typeof chosen === 'object' && chosen !== null && typeof (chosen as { then?: unknown }).then === 'function';
  const hint = isThenable
    ? ' (a Promise: balancer functions run on every read and must be synchronous)'
    : typeof chosenName === 'string' && names.includes(chosenName)
      ? ' (a copy of a candidate: return the candidate object it was given, or its name)'
      : '';
  return new LaglessError(
    'INVALID_OPTION',
    `The balancer function returned ${showValue(chosen)}, which is not one of the candidates [${names.join(', ')}]${hint}`,
    { context: { option: 'balancer', returned: showValue(chosen), candidates: names } },
  );
}
