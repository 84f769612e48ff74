import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BinaryProvider, type Cluster, resolveBinaries, startCluster } from '../src/index.js';
import { isAlive } from '../src/process-tree.js';
import { canListen, clusterProcesses, connect, waitFor } from './helpers.js';

function available(provider: BinaryProvider): boolean {
  try {
    resolveBinaries({ provider });
    return true;
  } catch {
    return false;
  }
}

// CI installs both; a machine without system PostgreSQL still runs the embedded half.
const providers = (['system', 'embedded'] as const).filter((p) => process.env.CI || available(p));

const rowOn = async (node: { query: Cluster['primary']['query'] }, id: number) =>
  (await node.query<{ note: string }>('SELECT note FROM notes WHERE id = $1', [id]))[0]?.note;

describe.each(providers)('cluster on %s binaries', (provider) => {
  let cluster: Cluster;
  let nextId = 1;
  const insert = async (note: string): Promise<number> => {
    const id = nextId++;
    await cluster.primary.query('INSERT INTO notes (id, note) VALUES ($1, $2)', [id, note]);
    return id;
  };

  const streamingNames = async (): Promise<string[]> =>
    (
      await cluster.primary.query<{ application_name: string }>(
        "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1",
      )
    ).map((row) => row.application_name);

  beforeAll(async () => {
    cluster = await startCluster({ provider, replicas: 2 });
    await cluster.primary.query('CREATE TABLE notes (id int PRIMARY KEY, note text NOT NULL)');
  });
  afterAll(() => cluster?.stop());

  it('starts a primary and two streaming replicas of the same cluster', async () => {
    expect(cluster.provider).toBe(provider);
    const streaming = await cluster.primary.query<{ application_name: string; state: string }>(
      'SELECT application_name, state FROM pg_stat_replication ORDER BY application_name',
    );
    expect(streaming).toEqual([
      { application_name: 'replica1', state: 'streaming' },
      { application_name: 'replica2', state: 'streaming' },
    ]);
    const nodes = [cluster.primary, ...cluster.replicas];
    const info = await Promise.all(
      nodes.map(async (node) => {
        const [row] = await node.query<{ id: string; recovery: boolean; port: number; db: string }>(
          'SELECT system_identifier::text AS id, pg_is_in_recovery() AS recovery, inet_server_port() AS port, current_database() AS db FROM pg_control_system()',
        );
        return row;
      }),
    );
    expect(info.map((r) => r?.recovery)).toEqual([false, true, true]);
    expect(new Set(info.map((r) => r?.id))).toEqual(new Set([cluster.systemIdentifier]));
    expect(info.map((r) => r?.port)).toEqual(nodes.map((n) => n.port));
    expect(info.map((r) => r?.db)).toEqual(['app', 'app', 'app']);
  });

  it('replicates a row written on the primary to every replica', async () => {
    const id = await insert('hello');
    for (const replica of cluster.replicas) {
      expect(await waitFor(`row on ${replica.name}`, () => rowOn(replica, id))).toBe('hello');
    }
  });

  it('keeps a paused replica stale while the other catches up, and catches it up after resume', async () => {
    const [paused, live] = cluster.replicas;
    if (!paused || !live) throw new Error('two replicas expected');
    await paused.pauseReplay();
    try {
      const before = await paused.replayLsn();
      const id = await insert('while paused');
      await waitFor('row on the live replica', () => rowOn(live, id));
      await live.waitForReplay(await cluster.primary.currentWalLsn());
      expect(await rowOn(paused, id)).toBeUndefined();
      expect(await paused.replayLsn()).toBe(before);
      await paused.resumeReplay();
      expect(await waitFor('row on the resumed replica', () => rowOn(paused, id))).toBe('while paused');
    } finally {
      await paused.resumeReplay();
    }
  });

  it('delays visibility on a replica by setApplyDelay(ms)', async () => {
    const [delayed, live] = cluster.replicas;
    if (!delayed || !live) throw new Error('two replicas expected');
    await delayed.setApplyDelay(200);
    try {
      // The commit happens after this instant, and the delay counts from the commit.
      const beforeCommit = Date.now();
      const id = await insert('delayed');
      await waitFor('row on the undelayed replica', () => rowOn(live, id));
      await waitFor('row on the delayed replica', () => rowOn(delayed, id));
      expect(Date.now() - beforeCommit).toBeGreaterThanOrEqual(199);
    } finally {
      await delayed.setApplyDelay(0);
    }
  });

  it('restarts a killed replica, which streams again', async () => {
    const replica = cluster.replicas[1];
    if (!replica || !cluster.dir) throw new Error('a local replica expected');
    const before = clusterProcesses(cluster.dir).length;
    await replica.kill();
    expect(replica.state).toBe('stopped');
    await expect(replica.query('SELECT 1', [], { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
    await expect(replica.promote()).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    expect(clusterProcesses(cluster.dir).length).toBeLessThan(before);
    const id = await insert('while down');
    await replica.start();
    expect(replica.state).toBe('running');
    const streaming = await cluster.primary.query<{ state: string }>(
      "SELECT state FROM pg_stat_replication WHERE application_name = 'replica2'",
    );
    expect(streaming).toEqual([{ state: 'streaming' }]);
    expect(await waitFor('row written while down', () => rowOn(replica, id))).toBe('while down');
  });

  it('stops and starts a replica cleanly', async () => {
    const replica = cluster.replicas[0];
    if (!replica) throw new Error('a replica expected');
    await replica.stop();
    await expect(replica.query('SELECT 1', [], { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
    await replica.start();
    const id = await insert('after restart');
    expect(await waitFor('row after restart', () => rowOn(replica, id))).toBe('after restart');
  });

  it('makes queries to a frozen replica time out instead of hanging, and recovers on thaw', async () => {
    const replica = cluster.replicas[0];
    if (!replica) throw new Error('a replica expected');
    const open = await connect(replica.url, { query_timeout: 500 });
    try {
      await replica.freeze();
      expect(replica.state).toBe('frozen');
      await expect(open.query('SELECT 1')).rejects.toThrow(/timeout/i);
      await expect(connect(replica.url, { connectionTimeoutMillis: 500 })).rejects.toThrow(/timeout/i);
    } finally {
      await replica.thaw();
      await open.end().catch(() => {});
    }
    expect(replica.state).toBe('running');
    expect(await replica.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('waitForReplicas() waits for every running replica', async () => {
    const id = await insert('wait for all');
    await cluster.waitForReplicas();
    for (const replica of cluster.replicas) expect(await rowOn(replica, id)).toBe('wait for all');
  });

  it('restarts a killed primary on the same port; replicas reconnect and replay writes made after', async () => {
    const { primary } = cluster;
    const { port, url } = primary;
    await primary.kill();
    expect(primary.state).toBe('stopped');
    await expect(primary.query('SELECT 1', [], { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
    await expect(cluster.waitForReplicas()).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    await primary.start();
    expect(primary.state).toBe('running');
    expect(primary.url).toBe(url);
    expect(await primary.query('SELECT inet_server_port() AS port')).toEqual([{ port }]);
    const id = await insert('after the primary crashed');
    for (const replica of cluster.replicas) {
      expect(await waitFor(`row on ${replica.name}`, () => rowOn(replica, id))).toBe('after the primary crashed');
    }
    await waitFor('both replicas streaming', async () => (await streamingNames()).length === 2);
  });

  it('stops and starts the primary cleanly', async () => {
    const { primary } = cluster;
    await primary.stop();
    expect(primary.state).toBe('stopped');
    await expect(primary.query('SELECT 1', [], { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
    await primary.stop(); // no-op when stopped
    await primary.start();
    const id = await insert('after a clean primary restart');
    await cluster.waitForReplicas();
    for (const replica of cluster.replicas) expect(await rowOn(replica, id)).toBe('after a clean primary restart');
  });

  it('makes queries to a frozen primary time out, and recovers on thaw', async () => {
    const { primary } = cluster;
    const open = await connect(primary.url, { query_timeout: 500 });
    try {
      await primary.freeze();
      expect(primary.state).toBe('frozen');
      await expect(open.query('SELECT 1')).rejects.toThrow(/timeout/i);
      await expect(connect(primary.url, { connectionTimeoutMillis: 500 })).rejects.toThrow(/timeout/i);
    } finally {
      await primary.thaw();
      await open.end().catch(() => {});
    }
    expect(primary.state).toBe('running');
    const id = await insert('after thaw');
    await cluster.waitForReplicas();
    for (const replica of cluster.replicas) expect(await rowOn(replica, id)).toBe('after thaw');
  });

  it('promotes a replica after the primary died: it takes writes, and stays a primary across a restart', async () => {
    const [promoted, follower] = cluster.replicas;
    if (!promoted || !follower) throw new Error('two replicas expected');
    const before = await insert('before failover');
    await cluster.waitForReplicas();
    await cluster.primary.kill();
    await expect(promoted.promote({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await promoted.promote();
    expect(promoted.promoted).toBe(true);
    expect(follower.promoted).toBe(false);
    expect(await promoted.query('SELECT pg_is_in_recovery() AS recovery')).toEqual([{ recovery: false }]);
    const after = nextId++;
    await promoted.query('INSERT INTO notes (id, note) VALUES ($1, $2)', [after, 'on the new primary']);
    expect(await rowOn(promoted, after)).toBe('on the new primary');
    expect(await rowOn(promoted, before)).toBe('before failover');
    await promoted.promote(); // already promoted: resolves at once

    // No standby.signal comes back: it restarts as a primary, without waiting to stream from anyone.
    await promoted.stop();
    await promoted.start();
    expect(await promoted.query('SELECT pg_is_in_recovery() AS recovery')).toEqual([{ recovery: false }]);

    // The old primary comes back with the other replica still following it; waitForReplicas() must
    // not wait for the promoted node, whose timeline has left the primary's.
    await cluster.primary.start();
    const id = await insert('old primary again');
    await cluster.waitForReplicas({ timeoutMs: 5_000 });
    expect(await rowOn(follower, id)).toBe('old primary again');
    expect(await rowOn(promoted, id)).toBeUndefined();
  });

  it('stop() leaves nothing behind with the primary killed and a replica promoted', async () => {
    const dir = cluster.dir;
    if (!dir) throw new Error('a local cluster has a directory');
    await cluster.primary.kill();
    const pids = clusterProcesses(dir);
    expect(pids.length).toBeGreaterThan(0);
    const ports = [cluster.primary.port, ...cluster.replicas.map((r) => r.port)];
    await cluster.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    for (const port of ports) expect(await canListen(port)).toBe(true);
  });
});

describe.each(providers)('stop() on %s binaries', (provider) => {
  it('leaves no process, port or file behind', async () => {
    const cluster = await startCluster({ provider, replicas: 1 });
    const dir = cluster.dir;
    if (!dir) throw new Error('a local cluster has a directory');
    const pids = clusterProcesses(dir);
    // postmaster + its auxiliary processes, for each of the two servers
    expect(pids.length).toBeGreaterThanOrEqual(6);
    const ports = [cluster.primary.port, ...cluster.replicas.map((r) => r.port)];
    // stop() must cope with frozen servers too
    await cluster.replicas[0]?.freeze();
    await cluster.primary.freeze();
    await cluster.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    for (const port of ports) expect(await canListen(port)).toBe(true);
    await cluster.stop(); // idempotent
  });
});
