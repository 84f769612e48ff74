export type { BackoffOptions } from './backoff.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export type { Balancer, BalancerCandidate, BalancerFunction, BalancerName } from './balancers.js';
export { createBalancer, seededRandom } from './balancers.js';
export type { FailureDescription } from './connection-errors.js';
export { describeFailure, isConnectionLevelError, isRecoveryConflict } from './connection-errors.js';
export type { LaglessErrorCode, LaglessErrorOptions, ShowValueOptions } from './errors.js';
export { invalidOption, isLaglessError, LaglessError, redactSecrets, showValue } from './errors.js';
export type { RouterEventName, RouterEvents, RouterListener, RouterLogger } from './events.js';
export type { LaglessHandle } from './handle.js';
export { laglessHandle } from './handle.js';
export { compareLsn, formatLsn, MAX_LSN, maxLsn, parseLsn, ZERO_LSN } from './lsn.js';
export { MemoryTokenStore } from './memory-token-store.js';
export type { ConsistencyMode, RouterNode, RouterOptions } from './options.js';
export { ROUTER_OPTION_NAMES } from './options.js';
export type { NodeIdentity, NodeProbes, ReplayState } from './probes.js';
export type {
  LagHistoryStats,
  NodeFailure,
  PrimaryReadReason,
  ReadObserver,
  ReadOptions,
  ReplicaStats,
  RouterInternals,
  RouterStats,
  RouteTarget,
  ServedRead,
  SessionInit,
} from './router.js';
export { createRouter, Router } from './router.js';
export type { TokenPayload, TokenRejectionReason, TokenSecret } from './token.js';
export { decodeToken, encodeToken } from './token.js';
export type { TokenLookup, TokenStore } from './token-store.js';
