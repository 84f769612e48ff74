// What the status page shows, kept in one place: the story writes tallies and steps here, the
// routers' stats are sampled here (with a lag history the page draws), and the page reads snapshots.
import type { ReplicaStats, RouterEventName, RouterEvents, RouterStats } from '@lagless/core';
import type { Contender, ContenderId } from './contenders.js';

/** What the story counted for one router, each read judged by the server or by its data. */
export interface Tally {
  reads: number;
  /** Reads that did not return the row written just before (the node had not replayed it). */
  stale: number;
  /** Reads that threw. */
  failed: number;
  /** Reads by the node that served them, named from `inet_server_port()`. */
  byNode: Record<string, number>;
}

export interface StepView {
  n: number;
  title: string;
  state: 'pending' | 'running' | 'done';
  /** One line per router once the step is done. */
  results: string[];
}

export interface ContenderView {
  id: ContenderId;
  label: string;
  kind: 'lagless' | 'peer';
  tally: Tally;
  /** lagless only: the router's own counters. */
  router: RouterStats['reads'] | null;
}

export interface ReplicaView extends ReplicaStats {
  /** Replay lag in ms, oldest first, one sample per {@link SAMPLE_MS}. */
  lagSeries: Array<number | null>;
}

export interface RouterView {
  id: ContenderId;
  label: string;
  primary: RouterStats['primary'];
  replicas: ReplicaView[];
}

export interface StatusSnapshot {
  phase: string;
  step: number;
  steps: StepView[];
  notes: string[];
  contenders: ContenderView[];
  routers: RouterView[];
  events: Array<{ at: string; source: string; text: string }>;
  sampleMs: number;
  done: boolean;
}

export const SAMPLE_MS = 250;
const HISTORY = 120; // 30 s of samples
const EVENTS = 40;
const SHOWN_EVENTS: readonly RouterEventName[] = [
  'replica-down',
  'replica-up',
  'replica-misconfigured',
  'primary-down',
  'primary-up',
  'fallback',
  'retry',
  'store-down',
  'store-up',
  'store-data-lost',
];

export const emptyTally = (): Tally => ({ reads: 0, stale: 0, failed: 0, byNode: {} });

export class DemoStatus {
  phase = 'starting';
  step = 0;
  done = false;
  readonly steps: StepView[] = [];
  readonly notes: string[] = [];
  readonly #contenders: Contender[] = [];
  readonly #tallies = new Map<ContenderId, Tally>();
  readonly #lag = new Map<string, Array<number | null>>();
  readonly #events: Array<{ at: string; source: string; text: string }> = [];
  readonly #unsubscribe: Array<() => void> = [];
  #sampler: NodeJS.Timeout | undefined;

  constructor(titles: readonly string[]) {
    titles.forEach((title, i) => {
      this.steps.push({ n: i + 1, title, state: 'pending', results: [] });
    });
  }

  /** Starts showing these routers: tallies, their events, and their stats sampled for lag history. */
  watch(contenders: readonly Contender[]): void {
    for (const contender of contenders) {
      this.#contenders.push(contender);
      this.#tallies.set(contender.id, emptyTally());
      const router = contender.lagless?.router;
      if (!router) continue;
      for (const event of SHOWN_EVENTS) {
        this.#unsubscribe.push(
          router.on(event, (payload) => this.event(contender.label, describe(event, payload as never))),
        );
      }
    }
    this.#sampler = setInterval(() => this.#sample(), SAMPLE_MS);
    this.#sampler.unref();
  }

  tally(id: ContenderId): Tally {
    const tally = this.#tallies.get(id);
    if (!tally) throw new Error(`unknown contender ${id}`);
    return tally;
  }

  event(source: string, text: string): void {
    const last = this.#events.at(-1);
    // A burst of the same event (fallbacks while a replica is away) is one line with a count.
    const repeat = last && last.source === source && last.text.replace(/ ×\d+$/, '') === text;
    if (repeat) {
      const count = Number(/ ×(\d+)$/.exec(last.text)?.[1] ?? 1) + 1;
      last.text = `${text} ×${count}`;
      last.at = clock();
      return;
    }
    this.#events.push({ at: clock(), source, text });
    if (this.#events.length > EVENTS) this.#events.shift();
  }

  startStep(n: number): StepView {
    const step = this.steps[n - 1];
    if (!step) throw new Error(`no step ${n}`);
    step.state = 'running';
    this.step = n;
    this.phase = `step ${n}: ${step.title}`;
    this.event('story', this.phase);
    return step;
  }

  snapshot(): StatusSnapshot {
    const routers: RouterView[] = [];
    const contenders: ContenderView[] = [];
    for (const contender of this.#contenders) {
      const stats = contender.lagless?.stats();
      contenders.push({
        id: contender.id,
        label: contender.label,
        kind: stats ? 'lagless' : 'peer',
        tally: this.tally(contender.id),
        router: stats?.reads ?? null,
      });
      if (!stats) continue;
      routers.push({
        id: contender.id,
        label: contender.label,
        primary: stats.primary,
        replicas: stats.replicas.map((replica) => ({
          ...replica,
          lagSeries: this.#lag.get(`${contender.id}/${replica.name}`) ?? [],
        })),
      });
    }
    return {
      phase: this.phase,
      step: this.step,
      steps: this.steps,
      notes: this.notes,
      contenders,
      routers,
      events: [...this.#events].reverse(),
      sampleMs: SAMPLE_MS,
      done: this.done,
    };
  }

  close(): void {
    clearInterval(this.#sampler);
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #sample(): void {
    for (const contender of this.#contenders) {
      const stats = contender.lagless?.stats();
      for (const replica of stats?.replicas ?? []) {
        const key = `${contender.id}/${replica.name}`;
        const history = this.#lag.get(key) ?? [];
        history.push(replica.state === 'up' ? replica.lagMs : null);
        if (history.length > HISTORY) history.shift();
        this.#lag.set(key, history);
      }
    }
  }
}

function clock(): string {
  return new Date().toISOString().slice(11, 23);
}

function describe<E extends RouterEventName>(event: E, payload: RouterEvents[E]): string {
  const p = payload as Record<string, unknown>;
  switch (event) {
    case 'replica-down':
      return `${p.replica} down: ${p.code ?? ''} ${String(p.reason ?? '')}`.replace(/\s+/g, ' ').trim();
    case 'replica-up':
      return `${p.replica} up (in rotation)`;
    case 'fallback':
      return `read fell back to the primary (${p.reason})`;
    case 'retry':
      return `read retried after ${p.replica} failed`;
    default:
      return event;
  }
}
