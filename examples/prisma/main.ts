// npm start (in examples/prisma) or, from the root: node --conditions=lagless-source --import tsx examples/prisma/main.ts
// Uses LAGLESS_PRIMARY_URL / LAGLESS_REPLICA_URLS when set, else starts a local cluster.
import { startCluster } from '@lagless/testkit';
import { runExample, SCHEMA_SQL } from './app.js';

const cluster = await startCluster({ replicas: 2 });
try {
  for (const statement of SCHEMA_SQL) await cluster.primary.query(statement);
  await cluster.waitForReplicas();
  await runExample(
    { primary: cluster.primary.url, replicas: cluster.replicas.map((replica) => replica.url) },
    {
      pauseOneReplica: async () => {
        await cluster.replicas[0]?.pauseReplay();
        console.log('paused WAL replay on replica 0: it now serves stale data');
      },
      log: (line) => console.log(line),
    },
  );
} finally {
  await cluster.stop();
}
