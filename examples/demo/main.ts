// The lagless demo: a real primary with two streaming replicas, started on this machine in seconds.
// A row written on the primary is watched arriving on each replica, with the replica's replay LSN,
// then one replica's replay is paused to show the stale read that lagless exists to prevent.
import { setTimeout as sleep } from 'node:timers/promises';
import { startCluster } from '@lagless/testkit';
import pg from 'pg';

const started = Date.now();
const cluster = await startCluster({ replicas: 2 });
console.log(
  `cluster up in ${Date.now() - started} ms: PostgreSQL ${cluster.serverVersion} (${cluster.provider} binaries)`,
);
console.log(`  primary   ${cluster.primary.url}`);
for (const replica of cluster.replicas) console.log(`  ${replica.name.padEnd(9)} ${replica.url}`);

const connect = async (url: string): Promise<pg.Client> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
};
const primary = await connect(cluster.primary.url);
const replicas = await Promise.all(cluster.replicas.map(async (r) => ({ name: r.name, client: await connect(r.url) })));

try {
  await primary.query('CREATE TABLE greetings (id serial PRIMARY KEY, text text NOT NULL)');
  await cluster.waitForReplicas();

  const show = async (label: string): Promise<void> => {
    const written = Date.now();
    const { rows } = await primary.query<{ id: number }>('INSERT INTO greetings (text) VALUES ($1) RETURNING id', [
      label,
    ]);
    const id = rows[0]?.id;
    const { rows: lsnRows } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    console.log(`\nwrote "${label}" (id ${id}) on the primary; WAL insert position ${lsnRows[0]?.lsn}`);
    await Promise.all(
      replicas.map(async ({ name, client }) => {
        for (let polls = 0; polls < 50; polls++) {
          const { rows: seen } = await client.query<{ text: string | null; lsn: string }>(
            'SELECT (SELECT text FROM greetings WHERE id = $1) AS text, pg_last_wal_replay_lsn()::text AS lsn',
            [id],
          );
          const row = seen[0];
          if (row?.text) {
            console.log(`  ${name}: row visible after ${Date.now() - written} ms, replay LSN ${row.lsn}`);
            return;
          }
          await sleep(20);
        }
        const { rows: last } = await client.query<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
        console.log(
          `  ${name}: still NOT visible after ${Date.now() - written} ms — stale at replay LSN ${last[0]?.lsn}`,
        );
      }),
    );
  };

  await show('hello from the primary');
  const paused = cluster.replicas[0];
  if (paused) {
    await paused.pauseReplay();
    console.log(`\npaused WAL replay on ${paused.name}: it keeps serving reads, frozen in time`);
    await show('written while replica1 is paused');
    await paused.resumeReplay();
    console.log(`resumed ${paused.name}`);
    await show('after resume');
  }
  console.log(
    '\nA read sent to a random replica right after a write can return stale data: lagless routes it by LSN instead.',
  );
} finally {
  await Promise.all([primary, ...replicas.map((r) => r.client)].map((c) => c.end()));
  await cluster.stop();
  console.log('cluster stopped and removed');
}
