export type { GetReplica, WithReplicasOptions } from './options.js';
export type { LaglessDatabase, LaglessHandle } from './with-replicas.js';
export { withReplicas } from './with-replicas.js';
