export type { AdminQueryOptions, NodeConnection } from './admin-client.js';
export { connectionUrl, parseConnectionUrl } from './admin-client.js';
export type { BinaryProvider, PostgresBinaries } from './binaries.js';
export { resolveBinaries } from './binaries.js';
export type {
  Cluster,
  ClusterNode,
  ClusterProvider,
  PrimaryNode,
  ReplicaNode,
  ReplicaState,
  StartClusterOptions,
} from './cluster.js';
export type { TestkitErrorCode } from './errors.js';
export { isTestkitError, redactUrl, TestkitError } from './errors.js';
export type { FaultProxy, FaultProxyOptions, ProxyDirection } from './fault-proxy.js';
export { createFaultProxy } from './fault-proxy.js';
export { type RedisServer, startRedis } from './redis-server.js';
export { resolveProvider, startCluster } from './start-cluster.js';
