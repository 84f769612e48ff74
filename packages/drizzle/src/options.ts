import { invalidOption, type RouterOptions } from '@lagless/core';

/** drizzle-orm's own replica chooser, accepted as `withReplicas`' third argument for compatibility. */
export type GetReplica<Q> = (replicas: Q[]) => Q;

/**
 * Options of `withReplicas()`: every router option of `@lagless/core` except the nodes, which come
 * from the databases passed in.
 */
export interface WithReplicasOptions<Q> extends Omit<RouterOptions<Q>, 'primary' | 'replicas'> {
  /**
   * drizzle-orm's `getReplica(replicas)` chooser. It is called with the replicas that may serve the
   * read now (healthy, caught up, within lag limits), so it cannot pick a dead one. Exclusive with
   * `balancer`.
   * @default undefined (the `balancer` option decides)
   */
  getReplica?: GetReplica<Q>;
  /** Name of the primary in stats, events and errors. @default 'primary' */
  primaryName?: string;
  /** Names of the replicas, in the order of the `replicas` argument. @default ['replica-0', 'replica-1', ...] */
  replicaNames?: readonly string[];
  /** Share of reads of each replica under the `weighted` balancer, in the order of `replicas`. @default all 1 */
  replicaWeights?: readonly number[];
  /** Zone of each replica, in the order of `replicas` (see the router's `zone`). @default none */
  replicaZones?: readonly string[];
}

export interface ResolvedOptions<Q> {
  readonly router: Omit<RouterOptions<Q>, 'primary' | 'replicas'>;
  readonly getReplica: GetReplica<Q> | undefined;
  readonly primaryName: string;
  readonly replicaNames: readonly string[];
  readonly replicaWeights: readonly number[] | undefined;
  readonly replicaZones: readonly string[] | undefined;
}

/** Validates what the router does not know about; the router validates the rest when it is built. */
export function resolveOptions<Q>(third: unknown, replicaCount: number): ResolvedOptions<Q> {
  if (third !== undefined && typeof third !== 'function' && (typeof third !== 'object' || third === null)) {
    throw invalidOption('options', "an options object or drizzle's getReplica(replicas) function", third);
  }
  const options: WithReplicasOptions<Q> =
    typeof third === 'function' ? { getReplica: third as GetReplica<Q> } : ((third ?? {}) as WithReplicasOptions<Q>);
  for (const key of ['primary', 'replicas'] as const) {
    if (key in options) {
      const position = key === 'primary' ? 'first' : 'second';
      throw invalidOption(key, `no such option (it is withReplicas()' ${position} argument)`, (options as never)[key]);
    }
  }
  const { getReplica, primaryName = 'primary', replicaNames, replicaWeights, replicaZones, ...router } = options;
  if (getReplica !== undefined && typeof getReplica !== 'function') {
    throw invalidOption('getReplica', 'a function (replicas) => replica', getReplica);
  }
  if (getReplica !== undefined && router.balancer !== undefined) {
    throw invalidOption('balancer', 'no balancer when getReplica is given (both choose the replica)', router.balancer);
  }
  if (typeof primaryName !== 'string' || primaryName.length === 0) {
    throw invalidOption('primaryName', 'a non-empty string', primaryName);
  }
  const names = replicaNames ?? Array.from({ length: replicaCount }, (_, i) => `replica-${i}`);
  if (
    !Array.isArray(names) ||
    names.length !== replicaCount ||
    !names.every((name) => typeof name === 'string' && name.length > 0)
  ) {
    throw invalidOption('replicaNames', `${replicaCount} non-empty strings, one per replica`, replicaNames);
  }
  if (replicaWeights !== undefined && (!Array.isArray(replicaWeights) || replicaWeights.length !== replicaCount)) {
    throw invalidOption('replicaWeights', `${replicaCount} positive numbers, one per replica`, replicaWeights);
  }
  if (replicaZones !== undefined && (!Array.isArray(replicaZones) || replicaZones.length !== replicaCount)) {
    throw invalidOption('replicaZones', `${replicaCount} zone names, one per replica`, replicaZones);
  }
  return { router, getReplica, primaryName, replicaNames: names, replicaWeights, replicaZones };
}
