// runDemo(): the status page first, then a cluster on this machine, the four routers, and the story.
// main.ts runs it from `npm run demo`; status-page.test.ts runs it in-process under Chromium.
import type { TokenStore } from '@lagless/core';
import { redisTokenStore } from '@lagless/core/redis';
import {
  type Cluster,
  createFaultProxy,
  type FaultProxy,
  type RedisServer,
  startCluster,
  startRedis,
} from '@lagless/testkit';
import { Redis } from 'ioredis';
import { type Contender, type ContenderId, createContenders } from './contenders.js';
import { DDL } from './schema.js';
import { DemoStatus, type StepView, type Tally } from './status.js';
import { serveStatusPage } from './status-page.js';
import { runStory, SEEDED_ROWS, STEP_TITLES } from './story.js';

export interface DemoOptions {
  /** Stop after the story instead of serving the page until `signal` aborts. @default false */
  once?: boolean;
  /** Port of the status page on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** Where the story's lines go. @default console.log */
  log?: (line: string) => void;
  /** Called once the page serves, before the cluster starts. */
  onReady?: (url: string) => void | Promise<void>;
  /** Called after the story, while the page still serves its final state. */
  onStoryEnd?: (result: DemoResult) => void | Promise<void>;
  /** Ends the demo: the story stops between reads, everything started is stopped. */
  signal?: AbortSignal;
}

export interface DemoResult {
  steps: StepView[];
  tallies: Record<ContenderId, Tally>;
  /** Claims of lagless's that did not hold in this run (empty when the story showed what it says). */
  broken: string[];
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const { once = false, port = 0, log = console.log, signal = new AbortController().signal } = options;
  const status = new DemoStatus(STEP_TITLES);
  const page = await serveStatusPage(() => status.snapshot(), port);
  // Undone in reverse order whatever happens below: a failed start-up leaves no process behind.
  const cleanup: Array<() => Promise<unknown> | unknown> = [() => page.close()];
  try {
    log(`status page: ${page.url}`);
    await options.onReady?.(page.url);

    status.phase = 'starting a primary and two streaming replicas';
    const started = Date.now();
    const cluster: Cluster = await startCluster({ replicas: 2 });
    cleanup.push(() => cluster.stop());
    const [replica1, replica2] = cluster.replicas;
    if (!replica1 || !replica2) throw new Error('two replicas expected');
    const clusterLine = `PostgreSQL ${cluster.serverVersion} (${cluster.provider} binaries): primary :${cluster.primary.port}, ${replica1.name} :${replica1.port}, ${replica2.name} :${replica2.port} (through a fault proxy); up in ${Date.now() - started} ms`;
    status.notes.push(clusterLine);
    log(clusterLine);

    const proxy: FaultProxy = await createFaultProxy({ target: replica2.url, latencyMs: 0 });
    cleanup.push(() => proxy.close());
    const tokenStore = await startTokenStore(cleanup);
    status.notes.push(tokenStore.note);
    log(tokenStore.note);

    for (const statement of DDL) await cluster.primary.query(statement);
    await cluster.primary.query(
      `INSERT INTO "Item" (owner, body) SELECT 'seed', 'row ' || i FROM generate_series(1, ${SEEDED_ROWS}) i`,
    );
    await cluster.waitForReplicas();

    const contenders: Contender[] = createContenders({
      primary: { name: cluster.primary.name, url: cluster.primary.url },
      replicas: [
        { name: replica1.name, url: replica1.url },
        { name: replica2.name, url: proxy.url(replica2.url) },
      ],
      tokenStore: tokenStore.create,
    });
    cleanup.push(() => Promise.all(contenders.map((c) => c.close())));
    status.watch(contenders);
    cleanup.push(() => status.close());
    await Promise.all(contenders.map((c) => c.lagless?.ready()));

    const nodeByPort = new Map<number, string>([
      [cluster.primary.port, cluster.primary.name],
      ...cluster.replicas.map((r) => [r.port, r.name] as [number, string]),
    ]);
    await runStory({ cluster, proxy, contenders, status, nodeByPort, log, signal });

    const result = summarize(status, contenders);
    status.phase = signal.aborted
      ? 'stopped'
      : once
        ? 'story done'
        : 'story done: the routers keep probing; Ctrl-C stops the demo';
    status.done = true;
    status.event('story', status.phase);
    log(`\n${status.phase}`);
    if (result.broken.length > 0) log(`lagless claims that did not hold: ${result.broken.join('; ')}`);
    await options.onStoryEnd?.(result);
    if (!once && !signal.aborted) {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    return result;
  } finally {
    for (const undo of cleanup.reverse()) {
      try {
        await undo();
      } catch (error) {
        log(`cleanup: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}

/** A Redis for lagless's keyed sessions when `redis-server` is installed; otherwise a line saying why not. */
async function startTokenStore(
  cleanup: Array<() => Promise<unknown> | unknown>,
): Promise<{ create: ((prefix: string) => TokenStore) | undefined; note: string }> {
  let server: RedisServer;
  try {
    server = await startRedis();
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return {
      create: undefined,
      note: `no Redis (${why}): lagless sessions run without a token store (apt-get install redis-server to add one)`,
    };
  }
  cleanup.push(() => server.stop());
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, lazyConnect: false });
  client.on('error', () => {}); // the token store reports Redis failures through router events
  cleanup.push(() => client.quit().catch(() => client.disconnect()));
  return {
    create: (prefix) => redisTokenStore(client, { prefix }),
    note: `lagless sessions are keyed per user in Redis (redisTokenStore, redis-server at ${server.url})`,
  };
}

function summarize(status: DemoStatus, contenders: readonly Contender[]): DemoResult {
  const tallies = {} as Record<ContenderId, Tally>;
  const broken: string[] = [];
  for (const contender of contenders) {
    const tally = status.tally(contender.id);
    tallies[contender.id] = tally;
    if (!contender.lagless) continue;
    if (tally.stale > 0) broken.push(`${contender.label}: ${tally.stale} stale reads`);
    if (tally.failed > 0) broken.push(`${contender.label}: ${tally.failed} failed reads`);
  }
  return { steps: status.steps, tallies, broken };
}
