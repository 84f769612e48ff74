export type { AdminQueryOptions, NodeConnection } from './admin-client.js';
export { connectionUrl, parseConnectionUrl } from './admin-client.js';
export type { BinaryProvider, PostgresBinaries } from './binaries.js';
export { resolveBinaries } from './binaries.js';
export type {
  Cluster,
  ClusterNode,
  ClusterProvider,
  NodeProcessFaults,
  NodeState,
  PrimaryNode,
  PromoteOptions,
  ReplicaNode,
  ReplicaState,
  StartClusterOptions,
} from './cluster.js';
export type { TestkitErrorCode } from './errors.js';
export { isTestkitError, redactUrl, TestkitError } from './errors.js';
export type {
  FaultProxy,
  FaultProxyAddress,
  FaultProxyOptions,
  FaultProxyTarget,
  ProxyDirection,
  RetargetOptions,
} from './fault-proxy.js';
export { createFaultProxy } from './fault-proxy.js';
export {
  type RedisCluster,
  type RedisClusterNode,
  type StartRedisClusterOptions,
  startRedisCluster,
} from './redis-cluster.js';
export { type RedisServer, type StartRedisOptions, startRedis } from './redis-server.js';
export { resolveProvider, startCluster } from './start-cluster.js';
