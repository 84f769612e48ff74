import type { BackoffOptions } from './backoff.js';
import { validateBackoff } from './backoff.js';
import type { BalancerFunction, BalancerName } from './balancers.js';
import type { ConsistencyMode } from './consistency.js';
import { invalidOption } from './errors.js';
import type { RouterLogger } from './events.js';
import { type TokenSecret, validateSecret } from './token.js';
import type { TokenStore } from './token-store.js';

export type { ConsistencyMode } from './consistency.js';

/** One database server as the router sees it. Adapters build these from their ORM's clients. */
export interface RouterNode<C = unknown> {
  /** Unique among the router's nodes; shows up in stats, events and errors. */
  readonly name: string;
  /**
   * Runs one small statement on this node and returns its rows (probes and checks only; reads go
   * through `client`). It should fail, not hang, when the node is unreachable.
   */
  query(sql: string): Promise<ReadonlyArray<Record<string, unknown>>>;
  /** What reads routed to this node run against: an ORM client, a pool, a driver adapter. */
  readonly client: C;
  /** Share of reads under the `weighted` balancer. @default 1 */
  readonly weight?: number;
  /**
   * Where this node runs (a zone, a region: any name). With the router's `zone`, replicas in the
   * same zone serve reads first. @default undefined (no zone)
   */
  readonly zone?: string;
  /**
   * Called once by the router that takes this node, with a function to report failures seen
   * outside reads (e.g. a pool's idle connection dying): a replica is ejected at once, the
   * primary marked down. `pgNode()` from `@lagless/core/pg` wires a pg Pool's `'error'` here.
   */
  attach?(report: (error: unknown) => void): void;
}

export interface RouterOptions<C = unknown> {
  primary: RouterNode<C>;
  /** An empty list is valid: every read goes to the primary. @default [] */
  replicas?: ReadonlyArray<RouterNode<C>>;
  /** @default 'least-connections' */
  balancer?: BalancerName | BalancerFunction;
  /**
   * `session`: reads inside `session()` see that session's writes and never go back in time;
   * reads outside any session see every write this process made. `global`: every read sees every
   * write this process made, inside sessions too. `none`: replicas may be behind.
   * @default 'session'
   */
  consistency?: ConsistencyMode;
  /**
   * Inside a session, no read shows data older than an earlier read of the same session (it stays
   * on the replica it used, or requires what that replica had replayed when it switches).
   * @default true
   */
  monotonicReads?: boolean;
  /**
   * This app's zone: replicas with the same `zone` serve its reads while one of them can; others
   * only when none in the zone can. @default undefined (zones ignored)
   */
  zone?: string | undefined;
  /** How long a read that needs an LSN no replica has replayed waits before `onTimeout`. @default 200 */
  waitTimeoutMs?: number;
  /** What a read does when no replica catches up within `waitTimeoutMs`. @default 'primary' */
  onTimeout?: 'primary' | 'error';
  /** Replicas further behind than this (measured) take no reads. @default Infinity */
  maxLagMs?: number;
  /** Replicas further behind than this many WAL bytes take no reads. @default Infinity */
  maxLagBytes?: number;
  /**
   * A `lag` event (and a logged line when nobody listens) when a replica's measured lag reaches
   * this many ms, and another when it falls back below half of it. Measured by the background
   * probes (`probeIntervalMs`); `false` turns the alert off (lag history is kept either way).
   * @default 5000 (the threshold replication runbooks commonly alert on)
   */
  lagAlertMs?: number | false;
  /** Bound on each read on a replica; past it the replica is ejected and the read retried. @default 30_000 */
  replicaTimeoutMs?: number;
  /** Interval of health and lag probes; 0 turns active probing off. @default 1000 */
  probeIntervalMs?: number;
  /** Bound on each probe. @default 1000 */
  probeTimeoutMs?: number;
  /** Schedule of half-open probes for an ejected replica. @default { initialMs: 250, maxMs: 30_000, multiplier: 2, jitter: 0.2 } */
  readmission?: Partial<BackoffOptions>;
  /**
   * Signs tokens (HMAC-SHA256) and rejects unsigned ones; at least 16 bytes. A list rotates
   * secrets: the first signs, every one verifies. @default undefined (unsigned)
   */
  tokenSecret?: TokenSecret;
  /** Where `session({ key })` keeps LSNs between requests and across instances. @default undefined */
  tokenStore?: TokenStore;
  /** Time to live of an LSN in the token store. @default 3_600_000 (1 h) */
  tokenTtlMs?: number;
  /** Called when a replica fails at the connection level (after it is ejected). */
  onReplicaError?: (error: unknown, replica: string) => void;
  /** Extra test for connection-level errors, on top of the built-in one. */
  isConnectionError?: (error: unknown) => boolean;
  /** Random source for balancers and jitter (deterministic in tests). @default Math.random */
  random?: () => number;
  /**
   * The cluster's `system_identifier` (`SELECT system_identifier FROM pg_control_system()`). Pins
   * it: a primary or replica reporting another is refused, and replicas are admitted at start-up
   * even while the primary does not answer. @default undefined (learned from the primary, or from
   * replicas that agree while it is away)
   */
  systemIdentifier?: string;
  /**
   * Where state changes (replica down, up, refused; primary down; token store unavailable) are
   * logged: a function gets every line; `false` silences them. @default lines on stderr for the
   * events no listener handles (as ioredis does for an unhandled 'error')
   */
  logger?: RouterLogger | undefined;
}

/**
 * Every option of {@link RouterOptions} but the nodes, for adapters that pass them through: the
 * compiler checks this list against the type, so a new option cannot be silently dropped.
 */
export const ROUTER_OPTION_NAMES = Object.freeze([
  'balancer',
  'consistency',
  'waitTimeoutMs',
  'onTimeout',
  'maxLagMs',
  'maxLagBytes',
  'lagAlertMs',
  'replicaTimeoutMs',
  'probeIntervalMs',
  'probeTimeoutMs',
  'readmission',
  'tokenSecret',
  'tokenStore',
  'tokenTtlMs',
  'onReplicaError',
  'isConnectionError',
  'random',
  'systemIdentifier',
  'logger',
  'monotonicReads',
  'zone',
] as const satisfies ReadonlyArray<Exclude<keyof RouterOptions, 'primary' | 'replicas'>>);

type MissingRouterOptionNames = Exclude<
  Exclude<keyof RouterOptions, 'primary' | 'replicas'>,
  (typeof ROUTER_OPTION_NAMES)[number]
>;
// Fails to compile when RouterOptions gains an option this list lacks.
const routerOptionNamesAreComplete: [MissingRouterOptionNames] extends [never] ? true : MissingRouterOptionNames = true;
void routerOptionNamesAreComplete;

export interface ResolvedRouterOptions {
  readonly balancer: BalancerName | BalancerFunction;
  readonly consistency: ConsistencyMode;
  readonly waitTimeoutMs: number;
  readonly onTimeout: 'primary' | 'error';
  readonly maxLagMs: number;
  readonly maxLagBytes: number;
  readonly lagAlertMs: number | false;
  readonly replicaTimeoutMs: number;
  readonly probeIntervalMs: number;
  readonly probeTimeoutMs: number;
  readonly readmission: Readonly<BackoffOptions>;
  /** The signing secret first; empty when tokens are unsigned. */
  readonly tokenSecrets: readonly Uint8Array[];
  readonly tokenStore: TokenStore | undefined;
  readonly tokenTtlMs: number;
  readonly onReplicaError: ((error: unknown, replica: string) => void) | undefined;
  readonly isConnectionError: ((error: unknown) => boolean) | undefined;
  readonly random: () => number;
  readonly systemIdentifier: string | undefined;
  readonly logger: RouterLogger | undefined;
  readonly monotonicReads: boolean;
  readonly zone: string | undefined;
}

function duration(
  option: string,
  value: unknown,
  fallback: number,
  { allowZero = false, allowInfinity = false } = {},
): number {
  if (value === undefined) return fallback;
  const ok =
    typeof value === 'number' &&
    !Number.isNaN(value) &&
    (allowInfinity || Number.isFinite(value)) &&
    (allowZero ? value >= 0 : value > 0);
  if (!ok) throw invalidOption(option, `a ${allowZero ? 'non-negative' : 'positive'} number of milliseconds`, value);
  return value as number;
}

function lagAlert(value: unknown): number | false {
  if (value === undefined) return 5000;
  if (value === false) return false;
  if (typeof value !== 'number' || !(value > 0 && value < Number.POSITIVE_INFINITY)) {
    throw invalidOption('lagAlertMs', 'a positive finite number of milliseconds, or false', value);
  }
  return value;
}

export function validateNode<C>(node: unknown, option: string): RouterNode<C> {
  if (typeof node !== 'object' || node === null) throw invalidOption(option, 'a node { name, query, client }', node);
  const candidate = node as Partial<RouterNode<C>>;
  if (typeof candidate.name !== 'string' || candidate.name.length === 0) {
    throw invalidOption(`${option}.name`, 'a non-empty string', candidate.name);
  }
  if (typeof candidate.query !== 'function') throw invalidOption(`${option}.query`, 'a function', candidate.query);
  if (candidate.attach !== undefined && typeof candidate.attach !== 'function') {
    throw invalidOption(`${option}.attach`, 'a function', candidate.attach);
  }
  if (
    candidate.weight !== undefined &&
    !(typeof candidate.weight === 'number' && candidate.weight > 0 && Number.isFinite(candidate.weight))
  ) {
    throw invalidOption(`${option}.weight`, 'a positive finite number', candidate.weight);
  }
  if (candidate.zone !== undefined && (typeof candidate.zone !== 'string' || candidate.zone.length === 0)) {
    throw invalidOption(`${option}.zone`, 'a non-empty string', candidate.zone);
  }
  return candidate as RouterNode<C>;
}

export function resolveRouterOptions<C>(options: RouterOptions<C>): {
  primary: RouterNode<C>;
  replicas: RouterNode<C>[];
  resolved: ResolvedRouterOptions;
} {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'an object', options);
  const primary = validateNode<C>(options.primary, 'primary');
  if (options.replicas !== undefined && !Array.isArray(options.replicas)) {
    throw invalidOption('replicas', 'an array of nodes', options.replicas);
  }
  const replicas = (options.replicas ?? []).map((node, i) => validateNode<C>(node, `replicas[${i}]`));
  const names = new Set([primary.name]);
  for (const replica of replicas) {
    if (names.has(replica.name)) throw invalidOption('replicas', 'nodes with distinct names', replica.name);
    names.add(replica.name);
  }
  const consistency = options.consistency ?? 'session';
  if (!['none', 'session', 'global'].includes(consistency)) {
    throw invalidOption('consistency', "'none' | 'session' | 'global'", consistency);
  }
  const onTimeout = options.onTimeout ?? 'primary';
  if (onTimeout !== 'primary' && onTimeout !== 'error')
    throw invalidOption('onTimeout', "'primary' | 'error'", onTimeout);
  if (options.random !== undefined && typeof options.random !== 'function')
    throw invalidOption('random', 'a function', options.random);
  for (const hook of ['onReplicaError', 'isConnectionError'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function')
      throw invalidOption(hook, 'a function', options[hook]);
  }
  const systemIdentifier = options.systemIdentifier;
  if (
    systemIdentifier !== undefined &&
    (typeof systemIdentifier !== 'string' || !/^[1-9][0-9]{0,19}$/.test(systemIdentifier))
  ) {
    throw invalidOption('systemIdentifier', 'the decimal digits of a system_identifier', systemIdentifier);
  }
  if (options.logger !== undefined && options.logger !== false && typeof options.logger !== 'function') {
    throw invalidOption('logger', 'a function (line) => void, or false', options.logger);
  }
  const monotonicReads = options.monotonicReads ?? true;
  if (typeof monotonicReads !== 'boolean') throw invalidOption('monotonicReads', 'a boolean', monotonicReads);
  if (options.zone !== undefined && (typeof options.zone !== 'string' || options.zone.length === 0)) {
    throw invalidOption('zone', 'a non-empty string', options.zone);
  }
  const store = options.tokenStore;
  if (store !== undefined && (typeof store?.get !== 'function' || typeof store?.raise !== 'function')) {
    throw invalidOption('tokenStore', 'a TokenStore { get, raise }', store);
  }
  const resolved: ResolvedRouterOptions = Object.freeze({
    balancer: options.balancer ?? 'least-connections',
    consistency,
    waitTimeoutMs: duration('waitTimeoutMs', options.waitTimeoutMs, 200, { allowZero: true }),
    onTimeout,
    maxLagMs: duration('maxLagMs', options.maxLagMs, Number.POSITIVE_INFINITY, {
      allowZero: true,
      allowInfinity: true,
    }),
    maxLagBytes: duration('maxLagBytes', options.maxLagBytes, Number.POSITIVE_INFINITY, {
      allowZero: true,
      allowInfinity: true,
    }),
    lagAlertMs: lagAlert(options.lagAlertMs),
    replicaTimeoutMs: duration('replicaTimeoutMs', options.replicaTimeoutMs, 30_000),
    probeIntervalMs: duration('probeIntervalMs', options.probeIntervalMs, 1000, { allowZero: true }),
    probeTimeoutMs: duration('probeTimeoutMs', options.probeTimeoutMs, 1000),
    readmission: validateBackoff(options.readmission, 'readmission'),
    tokenSecrets: validateSecret(options.tokenSecret, 'tokenSecret'),
    tokenStore: store,
    tokenTtlMs: duration('tokenTtlMs', options.tokenTtlMs, 3_600_000),
    onReplicaError: options.onReplicaError,
    isConnectionError: options.isConnectionError,
    random: options.random ?? Math.random,
    systemIdentifier,
    logger: options.logger,
    monotonicReads,
    zone: options.zone,
  });
  return { primary, replicas, resolved };
}
