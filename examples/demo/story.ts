// The scripted story: four faults, each shown through the four routers at once. Every count is
// decided by the server or by the data: a read that does not return the row just written is stale,
// a read that throws failed, and the node that served a read is the one `inet_server_port()` named.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, FaultProxy } from '@lagless/testkit';
import type { Contender, ContenderId } from './contenders.js';
import { type DemoStatus, emptyTally, type Tally } from './status.js';

export const STEP_TITLES = [
  'write → read pairs with replica1 behind (replay paused)',
  'replica1 killed and restarted under load',
  'replica2 slowed by +5 ms (fault proxy)',
  'replica2 lagging: 1 s apply delay, write → read pairs',
] as const;

/** Rows present everywhere before the story starts, for the reads under load. */
export const SEEDED_ROWS = 200;

const PAIRS = 40;
const LOAD_WORKERS = 4;
const KILL_AFTER_MS = 1000;
const DOWN_MS = 2000;
const SLOW_MS = 2500;
const APPLY_DELAY_MS = 1000;
const LAGGING_MS = 3500;
const READMISSION_TIMEOUT_MS = 15_000;

export interface StoryContext {
  cluster: Cluster;
  /** In front of replica2: every router reaches replica2 through it. */
  proxy: FaultProxy;
  contenders: readonly Contender[];
  status: DemoStatus;
  /** Node name by server port. */
  nodeByPort: ReadonlyMap<number, string>;
  log: (line: string) => void;
  signal: AbortSignal;
}

/** What a step counted for one router, and the latencies of its reads (ms). */
interface StepCount {
  tally: Tally;
  latencies: number[];
}

export async function runStory(ctx: StoryContext): Promise<void> {
  const steps = [stepBehind, stepKill, stepSlow, stepLagging];
  for (const [i, step] of steps.entries()) {
    if (ctx.signal.aborted) return;
    const view = ctx.status.startStep(i + 1);
    ctx.log(`\n${i + 1}. ${view.title}`);
    const lines = await step(ctx);
    view.results.push(...lines);
    view.state = 'done';
    for (const line of lines) ctx.log(`   ${line}`);
  }
}

async function stepBehind(ctx: StoryContext): Promise<string[]> {
  const [behind] = ctx.cluster.replicas;
  if (!behind) throw new Error('two replicas expected');
  await behind.pauseReplay();
  try {
    const counts = await forEachContender(ctx, async (contender, count) => {
      for (let i = 0; i < PAIRS && !ctx.signal.aborted; i++) {
        const user = `user-${contender.id}-${i % 8}`;
        await contender.request(user, async () => {
          const id = await contender.write(user, `pair ${i}`);
          await timedRead(ctx, contender, id, count);
        });
      }
    });
    return lines(ctx, counts, (c) => `${c.tally.stale}/${c.tally.reads} reads missed the row just written`);
  } finally {
    await behind.resumeReplay();
    await ctx.cluster.waitForReplicas({ timeoutMs: 15_000 });
  }
}

async function stepKill(ctx: StoryContext): Promise<string[]> {
  const [victim] = ctx.cluster.replicas;
  if (!victim) throw new Error('two replicas expected');
  let readmittedAfterMs: number | undefined;
  const counts = await underLoad(ctx, async () => {
    await pause(ctx, KILL_AFTER_MS);
    // Said before the kill: the routers may notice before kill() has seen the process gone.
    ctx.status.event('story', `killing ${victim.name} (SIGKILL)`);
    await victim.kill();
    await pause(ctx, DOWN_MS);
    const restarted = Date.now();
    await victim.start();
    ctx.status.event('story', `${victim.name} restarted (streams again)`);
    // The load goes on until every lagless router has taken the replica back.
    const deadline = restarted + READMISSION_TIMEOUT_MS;
    while (!ctx.signal.aborted && Date.now() < deadline && !allUp(ctx.contenders, victim.name)) await sleep(50);
    if (allUp(ctx.contenders, victim.name)) readmittedAfterMs = Date.now() - restarted;
    await pause(ctx, 500);
  });
  const readmission =
    readmittedAfterMs === undefined
      ? `${victim.name} not readmitted within ${READMISSION_TIMEOUT_MS / 1000} s`
      : `${victim.name} back in every lagless router's rotation ${readmittedAfterMs} ms after start() was called`;
  return [...lines(ctx, counts, (c) => `${c.tally.failed}/${c.tally.reads} reads failed`), readmission];
}

async function stepSlow(ctx: StoryContext): Promise<string[]> {
  const slowed = ctx.cluster.replicas[1];
  if (!slowed) throw new Error('two replicas expected');
  ctx.proxy.setLatency(5);
  try {
    const counts = await underLoad(ctx, () => pause(ctx, SLOW_MS));
    return lines(ctx, counts, (c) => {
      const share = c.tally.reads ? (100 * (c.tally.byNode[slowed.name] ?? 0)) / c.tally.reads : 0;
      return `${share.toFixed(0)} % of ${c.tally.reads} reads sent to ${slowed.name}, p99 ${percentile(c.latencies, 99).toFixed(1)} ms`;
    });
  } finally {
    ctx.proxy.setLatency(0);
  }
}

async function stepLagging(ctx: StoryContext): Promise<string[]> {
  const laggard = ctx.cluster.replicas[1];
  if (!laggard) throw new Error('two replicas expected');
  await laggard.setApplyDelay(APPLY_DELAY_MS);
  try {
    const until = Date.now() + LAGGING_MS;
    const counts = await forEachContender(ctx, async (contender, count) => {
      await Promise.all(
        Array.from({ length: 2 }, async (_, worker) => {
          for (let i = 0; Date.now() < until && !ctx.signal.aborted; i++) {
            const user = `lag-${contender.id}-${worker}`;
            await contender
              .request(user, async () => {
                const id = await contender.write(user, `lagging ${i}`);
                await timedRead(ctx, contender, id, count);
              })
              .catch(() => {}); // a failed write is not a read: timedRead counts failed reads
          }
        }),
      );
    });
    return lines(ctx, counts, (c) => {
      const onLaggard = c.tally.byNode[laggard.name] ?? 0;
      const fresh = c.tally.reads - c.tally.stale - c.tally.failed;
      return `${c.tally.stale}/${c.tally.reads} stale; ${laggard.name} served ${onLaggard} of the ${fresh} fresh reads`;
    });
  } finally {
    await laggard.setApplyDelay(0);
    await ctx.cluster.waitForReplicas({ timeoutMs: 15_000 });
  }
}

/** Runs `body` while every router reads seeded rows with {@link LOAD_WORKERS} concurrent loops. */
async function underLoad(ctx: StoryContext, body: () => Promise<void>): Promise<Map<ContenderId, StepCount>> {
  let stop = false;
  const load = forEachContender(ctx, (contender, count) =>
    Promise.all(
      Array.from({ length: LOAD_WORKERS }, async () => {
        while (!stop && !ctx.signal.aborted) {
          const ok = await timedRead(ctx, contender, 1 + Math.floor(Math.random() * SEEDED_ROWS), count);
          // A router whose reads fail at once would otherwise spin and starve the others of CPU.
          if (!ok) await sleep(10);
        }
      }),
    ).then(() => {}),
  );
  try {
    await body();
  } finally {
    stop = true;
  }
  return load;
}

async function forEachContender(
  ctx: StoryContext,
  run: (contender: Contender, count: StepCount) => Promise<void>,
): Promise<Map<ContenderId, StepCount>> {
  const counts = new Map<ContenderId, StepCount>();
  await Promise.all(
    ctx.contenders.map(async (contender) => {
      const count: StepCount = { tally: emptyTally(), latencies: [] };
      counts.set(contender.id, count);
      await run(contender, count);
    }),
  );
  return counts;
}

/** Reads item `id`, counting the outcome in the step and on the page; false when the read threw. */
async function timedRead(ctx: StoryContext, contender: Contender, id: number, count: StepCount): Promise<boolean> {
  const total = ctx.status.tally(contender.id);
  const started = performance.now();
  let port: number | null;
  try {
    port = await contender.read(id);
  } catch {
    for (const tally of [count.tally, total]) {
      tally.reads++;
      tally.failed++;
    }
    return false;
  }
  count.latencies.push(performance.now() - started);
  const node = port === null ? undefined : (ctx.nodeByPort.get(port) ?? `port ${port}`);
  for (const tally of [count.tally, total]) {
    tally.reads++;
    if (node === undefined) tally.stale++;
    else tally.byNode[node] = (tally.byNode[node] ?? 0) + 1;
  }
  return true;
}

function allUp(contenders: readonly Contender[], replica: string): boolean {
  return contenders.every(
    (c) => !c.lagless || c.lagless.stats().replicas.find((r) => r.name === replica)?.state === 'up',
  );
}

function lines(
  ctx: StoryContext,
  counts: Map<ContenderId, StepCount>,
  describe: (count: StepCount) => string,
): string[] {
  return ctx.contenders.map((c) => {
    const count = counts.get(c.id);
    return `${c.label.padEnd(34)} ${count ? describe(count) : 'no reads'}`;
  });
}

function pause(ctx: StoryContext, ms: number): Promise<void> {
  return sleep(ms, undefined, { signal: ctx.signal }).catch(() => {});
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}
