// A fake cluster for router unit tests: typed probe answers, no SQL and no database.

import { afterEach } from 'vitest';
import type { NodeProbes, RouterNode, RouterOptions } from '../src/index.js';
import { Router } from '../src/router.js';

export const refused = (): Error =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });

export interface FakeReplicaOptions {
  identifier?: string;
  recovery?: boolean;
}

/** A primary whose WAL position moves on writes, and replicas that replay on demand. */
export class FakeCluster {
  primaryLsn = 0x1000n;
  systemIdentifier = '7000000000000000001';
  readonly replay = new Map<string, bigint>();
  /** Nodes (by name, 'primary' included) whose probes fail as unreachable. */
  readonly down = new Set<string>();
  readonly replicaOptions = new Map<string, FakeReplicaOptions>();
  primaryProbes = 0;
  identityProbes = 0;
  replayProbes = 0;
  /** How long every identity probe takes to answer, in ms. */
  identityDelayMs = 0;

  primary(): RouterNode<string> {
    return this.#node('primary');
  }

  replica(name: string, options: FakeReplicaOptions = {}): RouterNode<string> {
    this.replay.set(name, this.primaryLsn);
    this.replicaOptions.set(name, options);
    return this.#node(name);
  }

  write(): void {
    this.primaryLsn += 0x100n;
  }

  catchUp(name: string): void {
    this.replay.set(name, this.primaryLsn);
  }

  /** What a read on `client` does here: fail like a dead server when it is down. */
  serve(client: string): string {
    if (this.down.has(client)) throw refused();
    return client;
  }

  readonly probes = (node: RouterNode<unknown>, role: 'primary' | 'replica'): NodeProbes => {
    const name = node.name;
    const reachable = async (): Promise<void> => {
      await Promise.resolve();
      if (this.down.has(name)) throw refused();
    };
    return {
      identity: async () => {
        if (this.identityDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.identityDelayMs));
        await reachable();
        this.identityProbes++;
        if (role === 'primary') {
          return {
            systemIdentifier: this.systemIdentifier,
            inRecovery: false,
            replayLsn: undefined,
            walLsn: this.primaryLsn,
          };
        }
        const options = this.replicaOptions.get(name) ?? {};
        const inRecovery = options.recovery ?? true;
        return {
          systemIdentifier: options.identifier ?? this.systemIdentifier,
          inRecovery,
          replayLsn: inRecovery ? this.replay.get(name) : undefined,
          walLsn: inRecovery ? undefined : this.primaryLsn,
        };
      },
      replay: async () => {
        await reachable();
        this.replayProbes++;
        const options = this.replicaOptions.get(name) ?? {};
        return { inRecovery: options.recovery ?? true, replayLsn: this.replay.get(name) };
      },
      walPosition: async () => {
        await reachable();
        this.primaryProbes++;
        return this.primaryLsn;
      },
    };
  };

  /** A router over this cluster: probes answered by the fake, no background probing, fast readmission. */
  router(replicas: Array<RouterNode<string>>, options: Partial<RouterOptions<string>> = {}): Router<string> {
    return new Router<string>(
      {
        primary: this.primary(),
        replicas,
        probeIntervalMs: 0,
        readmission: { initialMs: 10, maxMs: 20, jitter: 0 },
        logger: false,
        ...options,
      },
      { probes: this.probes },
    );
  }

  #node(name: string): RouterNode<string> {
    return {
      name,
      client: name,
      query: async () => {
        throw new Error('fake nodes answer through typed probes');
      },
    };
  }
}

/** Reads through `router`, served as the fake cluster would serve them (a down node throws). */
export function readOn(fake: FakeCluster, router: Router<string>): Promise<string> {
  return router.read(async (client) => fake.serve(client));
}

/** Polls `condition` every 5 ms until it holds, or fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Routers a test file makes are closed after each test: `const track = closeAfterEach()`, then
 * `track(fake.router(...))`.
 */
export function closeAfterEach(): (router: Router<string>) => Router<string> {
  const routers: Router<string>[] = [];
  afterEach(async () => {
    for (const router of routers.splice(0)) await router.close();
  });
  return (router) => {
    routers.push(router);
    return router;
  };
}
