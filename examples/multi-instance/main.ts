// npm start (in examples/multi-instance) or, from the root:
//   node --conditions=lagless-source --import tsx examples/multi-instance/main.ts
// One PostgreSQL primary with two streaming replicas and one Redis, on this machine; two app
// processes over them (Fastify + Prisma, Express + Drizzle); a client that writes through one and
// reads through the other while a replica's replay is paused.
import { startCluster, startRedis } from '@lagless/testkit';
import { runExample, running } from './run.js';
import { SCHEMA_SQL } from './schema.js';

// However this process ends, no app process outlives it (testkit stops PostgreSQL and Redis itself;
// an app also stops when its IPC channel to us closes).
const killApps = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.on('exit', killApps);
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    killApps();
    process.exit(code);
  });
}

const cluster = await startCluster({ replicas: 2 });
try {
  const redis = await startRedis();
  try {
    for (const statement of SCHEMA_SQL) await cluster.primary.query(statement);
    await cluster.waitForReplicas();
    const replicas = cluster.replicas.map(({ name, url, port }) => ({ name, url, port }));
    console.log(
      `primary on port ${cluster.primary.port}; ${replicas.map((r) => `${r.name} on ${r.port}`).join(', ')}; ` +
        `redis on ${redis.port}`,
    );
    const result = await runExample(
      { primary: { url: cluster.primary.url, port: cluster.primary.port }, replicas, redis: { url: redis.url } },
      {
        pauseOneReplica: async () => {
          const replica = cluster.replicas[0];
          if (!replica) throw new Error('no replica to pause');
          await replica.pauseReplay();
          return replica.port;
        },
        log: (line) => console.log(line),
      },
    );
    if (result.reads.some((read) => !read.sawWrite)) process.exitCode = 1;
  } finally {
    await redis.stop();
  }
} finally {
  await cluster.stop();
}
