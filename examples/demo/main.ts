// The lagless demo, on a real primary with two streaming replicas started on this machine.
//  1. A write on the primary is watched arriving on each replica, with its replay LSN.
//  2. With one replica's replay paused, "write then read" through a random replica (what
//     @prisma/extension-read-replicas and drizzle's withReplicas do) returns stale data; through
//     lagless, in a session, it never does.
//  3. A replica is killed mid-load: lagless ejects it, retries, fails no read, and readmits it.
import { setTimeout as sleep } from 'node:timers/promises';
import { createRouter } from '@lagless/core';
import { pgNode } from '@lagless/core/pg';
import { startCluster } from '@lagless/testkit';
import type pg from 'pg';

const PAIRS = 200;

const started = Date.now();
const cluster = await startCluster({ replicas: 2 });
console.log(
  `cluster up in ${Date.now() - started} ms: PostgreSQL ${cluster.serverVersion} (${cluster.provider} binaries)`,
);
console.log(`  primary   ${cluster.primary.url}`);
for (const replica of cluster.replicas) console.log(`  ${replica.name.padEnd(9)} ${replica.url}`);

// pgNode listens for the pool's 'error': the idle clients of the replica killed below do not crash us.
const primary = pgNode<pg.Pool>('primary', { connectionString: cluster.primary.url, max: 8 });
const replicas = cluster.replicas.map((r) => pgNode<pg.Pool>(r.name, { connectionString: r.url, max: 8 }));
const router = createRouter({
  primary,
  replicas,
  probeIntervalMs: 200,
  readmission: { initialMs: 200 },
  logger: false, // the events below tell the story
});
router.on('replica-down', ({ replica }) => console.log(`  event: ${replica} ejected`));
router.on('replica-up', ({ replica }) => console.log(`  event: ${replica} in rotation`));

const insert = (note: string) =>
  router.write(async (pool) => {
    const { rows } = await pool.query<{ id: number }>('INSERT INTO notes (note) VALUES ($1) RETURNING id', [note]);
    return Number(rows[0]?.id);
  });
const readBack = (pool: pg.Pool, id: number) =>
  pool.query<{ note: string }>('SELECT note FROM notes WHERE id = $1', [id]).then((r) => r.rows[0]?.note);

try {
  await router.ready();
  await primary.client.query('CREATE TABLE notes (id serial PRIMARY KEY, note text NOT NULL)');
  await cluster.waitForReplicas();

  console.log('\n1. replication');
  const written = Date.now();
  const id = await insert('hello');
  await Promise.all(
    cluster.replicas.map(async (replica, i) => {
      const pool = replicas[i]?.client;
      while (pool && !(await readBack(pool, id))) await sleep(2);
      console.log(
        `  ${replica.name}: row visible after ${Date.now() - written} ms, replay LSN ${await replica.replayLsn()}`,
      );
    }),
  );

  const paused = cluster.replicas[0];
  if (!paused) throw new Error('two replicas expected');
  await paused.pauseReplay();
  console.log(`\n2. read-your-writes, ${PAIRS} write→read pairs, ${paused.name}'s replay paused`);
  let stale = 0;
  for (let i = 0; i < PAIRS; i++) {
    const rowId = await insert(`random ${i}`);
    const pool = replicas[Math.floor(Math.random() * replicas.length)]?.client;
    if (pool && (await readBack(pool, rowId)) === undefined) stale++;
  }
  console.log(`  random replica (the official extensions):  ${stale}/${PAIRS} reads missed the row just written`);
  stale = 0;
  for (let i = 0; i < PAIRS; i++) {
    await router.session(async () => {
      const rowId = await insert(`lagless ${i}`);
      if ((await router.read((pool) => readBack(pool, rowId))) === undefined) stale++;
    });
  }
  const token = await router.session(async () => {
    await insert('token');
    return router.token();
  });
  console.log(`  lagless session:                          ${stale}/${PAIRS} reads missed it`);
  console.log(`  a token carries the guarantee to the next request: ${token}`);
  await paused.resumeReplay();

  console.log('\n3. failover: replica2 killed during concurrent reads');
  let failed = 0;
  let reads = 0;
  let stop = false;
  const load = Promise.all(
    Array.from({ length: 8 }, async () => {
      while (!stop) {
        try {
          await router.read((pool) => pool.query('SELECT count(*) FROM notes'));
          reads++;
        } catch {
          failed++;
        }
      }
    }),
  );
  await sleep(300);
  await cluster.replicas[1]?.kill();
  await sleep(700);
  await cluster.replicas[1]?.start();
  await sleep(1000);
  stop = true;
  await load;
  console.log(`  ${reads} reads, ${failed} failed`);

  const stats = router.stats();
  console.log('\nstats()');
  for (const r of stats.replicas) {
    console.log(
      `  ${r.name}: ${r.state}, served ${r.served}, failed ${r.failed}, p50 ${r.latency.p50Ms.toFixed(2)} ms, replay ${r.replayLsn}, lag ${r.lagBytes} B / ${r.lagMs} ms`,
    );
  }
  console.log(`  primary served ${stats.primary.served}; reads ${JSON.stringify(stats.reads)}`);
} finally {
  await router.close();
  await Promise.all([primary, ...replicas].map((n) => n.end()));
  await cluster.stop();
  console.log('\ncluster stopped and removed');
}
