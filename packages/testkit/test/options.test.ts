import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectionUrl, parseConnectionUrl } from '../src/admin-client.js';
import { hasServerBinaries, resolveBinaries, systemBinDirCandidates } from '../src/binaries.js';
import { isTestkitError, redactUrl, resolveProvider, startCluster, TestkitError } from '../src/index.js';
import { compareLsn } from '../src/nodes.js';

const scratch = mkdtempSync(join(tmpdir(), 'lagless-options-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function fakeBinDir(name: string, files: string[]): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const file of files) {
    writeFileSync(join(dir, file), '#!/bin/sh\necho "postgres (PostgreSQL) 16.4"\n');
    chmodSync(join(dir, file), 0o755);
  }
  return dir;
}

describe('startCluster options', () => {
  it.each([
    [{ replicas: -1 }, /replicas must be an integer from 0 to 32, received -1/],
    [{ replicas: 1.5 }, /replicas/],
    [{ replicas: 33 }, /replicas/],
    [{ database: '' }, /database must be a non-empty string/],
    [{ user: 'x'.repeat(64) }, /user must be/],
    [{ password: '' }, /password must be a non-empty string/],
    [{ startTimeoutMs: 0 }, /startTimeoutMs must be a positive number, received 0/],
    [{ settings: { 'bad name': 1 } }, /settings key must be a PostgreSQL setting name, received "bad name"/],
    [
      { provider: 'podman' as never },
      /provider must be auto \| system \| embedded \| docker \| external, received "podman"/,
    ],
  ])('rejects %o with INVALID_OPTION', async (options, message) => {
    const error = await startCluster(options).catch((e: unknown) => e);
    expect(isTestkitError(error)).toBe(true);
    expect((error as TestkitError).code).toBe('INVALID_OPTION');
    expect((error as Error).message).toMatch(message);
  });

  it('requires a primary URL for the external provider', async () => {
    const saved = process.env.LAGLESS_PRIMARY_URL;
    delete process.env.LAGLESS_PRIMARY_URL;
    try {
      await expect(startCluster({ provider: 'external' })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    } finally {
      if (saved !== undefined) process.env.LAGLESS_PRIMARY_URL = saved;
    }
  });
});

describe('resolveProvider', () => {
  it('follows the option, then LAGLESS_CLUSTER, then an existing cluster URL', () => {
    expect(resolveProvider('embedded', { LAGLESS_CLUSTER: 'system' })).toBe('embedded');
    expect(resolveProvider(undefined, { LAGLESS_CLUSTER: 'system' })).toBe('system');
    expect(resolveProvider(undefined, { LAGLESS_CLUSTER: 'docker', LAGLESS_PRIMARY_URL: 'postgres://x' })).toBe(
      'docker',
    );
    expect(resolveProvider(undefined, { LAGLESS_PRIMARY_URL: 'postgres://x' })).toBe('external');
    expect(resolveProvider(undefined, {})).toBe('auto');
  });

  it('names the environment variable when it holds a bad value', () => {
    expect(() => resolveProvider(undefined, { LAGLESS_CLUSTER: 'kind' })).toThrow(/LAGLESS_CLUSTER must be/);
  });
});

describe('binary discovery', () => {
  it('needs both postgres and initdb to be executable', () => {
    expect(hasServerBinaries(fakeBinDir('both', ['postgres', 'initdb']))).toBe(true);
    expect(hasServerBinaries(fakeBinDir('only-postgres', ['postgres']))).toBe(false);
    expect(hasServerBinaries(join(scratch, 'missing'))).toBe(false);
  });

  it('tries LAGLESS_PG_BINDIR first, then Debian directories by descending version, then PATH', () => {
    const debianRoot = join(scratch, 'debian');
    for (const version of ['9.6', '15', '17']) mkdirSync(join(debianRoot, version, 'bin'), { recursive: true });
    const candidates = systemBinDirCandidates(
      { LAGLESS_PG_BINDIR: '/opt/pg/bin', PATH: '/usr/local/bin:/usr/bin' },
      debianRoot,
    );
    expect(candidates[0]).toBe('/opt/pg/bin');
    const debian = candidates.filter((c) => c.startsWith(debianRoot));
    expect(debian).toEqual(['17', '15', '9.6'].map((v) => join(debianRoot, v, 'bin')));
    expect(candidates.indexOf('/usr/bin')).toBeGreaterThan(candidates.indexOf(join(debianRoot, '9.6', 'bin')));
  });

  it('reads the version of an explicit binDir and rejects one without the server binaries', () => {
    const dir = fakeBinDir('explicit', ['postgres', 'initdb']);
    expect(resolveBinaries({ provider: 'auto', binDir: dir })).toMatchObject({
      binDir: dir,
      version: '16.4',
      majorVersion: 16,
    });
    expect(() => resolveBinaries({ provider: 'auto', binDir: join(scratch, 'only-postgres') })).toThrow(
      expect.objectContaining({ code: 'BINARIES_NOT_FOUND' }),
    );
  });
});

describe('helpers', () => {
  it('redacts passwords in URLs', () => {
    expect(redactUrl('postgres://app:s3cr%40t@db:5432/app')).toBe('postgres://app:***@db:5432/app');
    expect(redactUrl('postgresql://u:p@h/d?sslmode=require')).toBe('postgresql://u:***@h/d?sslmode=require');
    expect(redactUrl('postgres://nopass@h/d')).toBe('postgres://nopass@h/d');
  });

  it('round-trips connection URLs with characters that need escaping', () => {
    const connection = { host: '127.0.0.1', port: 5433, user: 'a b', password: "p@ss:w/o'rd", database: 'my db' };
    expect(parseConnectionUrl(connectionUrl(connection))).toEqual(connection);
  });

  it('compares LSNs exactly', () => {
    expect(compareLsn('16/B374D848', '16/B374D848')).toBe(0);
    expect(compareLsn('0/306EE20', '0/0306EE21')).toBe(-1);
    expect(compareLsn('1/0', '0/FFFFFFFF')).toBe(1);
    expect(compareLsn('FFFFFFFF/FFFFFFFF', 'FFFFFFFF/FFFFFFFE')).toBe(1);
  });

  it('TestkitError carries a code and a server log tail', () => {
    const error = new TestkitError('START_FAILED', 'boom', { logTail: 'FATAL: x' });
    expect(error.message).toContain('FATAL: x');
    expect(isTestkitError(error)).toBe(true);
    expect(isTestkitError(new Error('x'))).toBe(false);
  });
});
