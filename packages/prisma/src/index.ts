export type { LaglessAdapterOptions, LaglessNodeInput } from './adapter.js';
export { isLaglessAdapter, LaglessAdapter, laglessAdapter } from './adapter.js';
export type {
  ConnectionInfo,
  IsolationLevel,
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  SqlQuery,
  SqlQueryable,
  SqlResultSet,
  Transaction,
} from './driver-types.js';
export type {
  LaglessClientApi,
  PrismaClientLike,
  ReadReplicasClientMethods,
  ReadReplicasExtension,
  ReadReplicasOptions,
} from './extension.js';
export { readReplicas } from './extension.js';
export type { NodeConnection } from './node-connection.js';
