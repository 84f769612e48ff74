import type { RouterStats } from '../src/index.js';

/**
 * `ready()`, or, where the first round of checks timed out (a loaded CI machine answering a probe in
 * over a second), every node up soon after: these tests need a healthy cluster, not a fast one.
 */
export async function serving(handle: { ready(): Promise<void>; stats(): RouterStats }): Promise<void> {
  try {
    await handle.ready();
  } catch (error) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const stats = handle.stats();
      if (stats.primary.state === 'up' && stats.replicas.every((replica) => replica.state === 'up')) return;
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
