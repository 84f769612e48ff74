// The drizzle example: a real primary with two streaming replicas on this machine, then the same
// application code over node-postgres and over postgres.js.
import { startCluster } from '@lagless/testkit';
import { runExample } from './app.js';
import { migration } from './schema.js';

const cluster = await startCluster({ replicas: 2 });
try {
  for (const statement of migration) await cluster.primary.query(statement);
  await cluster.waitForReplicas();
  const urls = { primary: cluster.primary.url, replicas: cluster.replicas.map((replica) => replica.url) };
  console.log(`primary on port ${cluster.primary.port}, replicas on ${cluster.replicas.map((r) => r.port).join(', ')}`);
  for (const driver of ['node-postgres', 'postgres.js'] as const) {
    await runExample(driver, urls, {
      pauseOneReplica: () => cluster.replicas[0]?.pauseReplay() ?? Promise.resolve(),
      log: (line) => console.log(line),
    });
    await cluster.replicas[0]?.resumeReplay();
  }
} finally {
  await cluster.stop();
}
