// What a user gets from npm: every package is packed as `npm publish` would, the tarballs are
// installed into a scratch app outside the workspace (no workspace links, no source condition, no
// vitest alias), and there every entry point is imported as ESM and required as CommonJS, the
// README's quick starts are type-checked with `skipLibCheck: false` under node16 and under bundler
// resolution and then run against a testkit cluster started from the installed @lagless/testkit,
// and the drizzle quick start runs again on the lowest drizzle-orm the peer range accepts.
//
// `npm test` builds first (`npm run build`); this file packs what that build produced.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGES, type PackedFile, packageJson, peerVersions, quickStartSources } from './scratch-app.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// The lowest drizzle-orm the adapter's peer range accepts; the workspace has the highest.
const LOWEST_DRIZZLE = '0.44.7';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with npm's own environment stripped, so nothing of the workspace leaks in. */
function run(command: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<RunResult> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  // prisma generate asks for a schema engine it never runs here and cannot download.
  env.PRISMA_SCHEMA_ENGINE_BINARY = join(cwd, 'fake-schema-engine.sh');
  env.CHECKPOINT_DISABLE = '1';
  env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
  env.NO_COLOR = '1';
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(command: string, args: string[], cwd: string, timeoutMs?: number): Promise<string> {
  const result = await run(command, args, cwd, timeoutMs);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

// drizzle-orm's own declarations do not pass `skipLibCheck: false` (hundreds of errors in its
// sqlite, singlestore and mysql builders, with or without lagless): those are drizzle's to fix. Every
// other file, ours and the app's, must have none.
const THIRD_PARTY_TYPE_ERRORS = /^node_modules\/drizzle-orm\//;

/** Type-checks the app; returns how many diagnostics fell in third-party declarations we tolerate. */
async function typecheck(config: string): Promise<number> {
  const result = await run('npx', ['--no-install', 'tsc', '-p', config], app);
  const errors = `${result.stdout}${result.stderr}`
    .split('\n')
    .filter((line) => /^\S.*\(\d+,\d+\): error TS/.test(line));
  const ours = errors.filter((line) => !THIRD_PARTY_TYPE_ERRORS.test(line));
  expect(ours, `${config}: type errors outside drizzle-orm's own declarations`).toEqual([]);
  if (result.code !== 0)
    expect(errors.length, `${config} failed without a diagnostic:\n${result.stdout}`).toBeGreaterThan(0);
  return errors.length - ours.length;
}

interface Packed {
  name: string;
  dir: string;
  filename: string;
  size: number;
  unpackedSize: number;
  files: PackedFile[];
}

let scratch: string;
let app: string;
const packed: Packed[] = [];

beforeAll(async () => {
  for (const dir of PACKAGES) {
    if (!existsSync(join(root, 'packages', dir, 'dist', 'cjs', 'index.js'))) {
      throw new Error(`packages/${dir} is not built: run \`npm run build\` first (npm test does)`);
    }
  }
  scratch = mkdtempSync(join(tmpdir(), 'lagless-pack-'));
  const tarballs = join(scratch, 'tarballs');
  mkdirSync(tarballs);
  for (const dir of PACKAGES) {
    const out = await ok('npm', ['pack', '--json', '--pack-destination', tarballs], join(root, 'packages', dir));
    const [info] = JSON.parse(out) as Array<Omit<Packed, 'dir'>>;
    if (info === undefined) throw new Error(`npm pack printed nothing for packages/${dir}`);
    packed.push({ ...info, dir });
  }
  console.log(
    `tarballs:\n${packed.map((p) => `  ${p.filename}: ${(p.size / 1024).toFixed(1)} kB packed, ${(p.unpackedSize / 1024).toFixed(1)} kB unpacked, ${p.files.length} files`).join('\n')}`,
  );

  app = join(scratch, 'app');
  mkdirSync(app);
  const versions = peerVersions(root);
  writeFileSync(
    join(app, 'package.json'),
    packageJson(Object.fromEntries(packed.map((p) => [p.name, `file:../tarballs/${p.filename}`])), versions),
  );
  for (const [file, text] of Object.entries(quickStartSources(readFileSync(join(root, 'README.md'), 'utf8')))) {
    mkdirSync(dirname(join(app, file)), { recursive: true });
    writeFileSync(join(app, file), text);
  }
  copyFileSync(join(root, 'packages/prisma/test/fake-schema-engine.sh'), join(app, 'fake-schema-engine.sh'));
  await ok('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], app, 300_000);
  await ok('npx', ['--no-install', 'prisma', 'generate', '--schema', 'prisma/schema.prisma'], app);
}, 600_000);

afterAll(() => {
  if (scratch !== undefined && !process.env.LAGLESS_KEEP_SCRATCH) rmSync(scratch, { recursive: true, force: true });
});

describe('tarballs', () => {
  it.each(PACKAGES)('packages/%s: LICENSE, README and the built files; no build info, no tests', (dir) => {
    const info = packed.find((p) => p.dir === dir);
    expect(info, `packages/${dir} was packed`).toBeDefined();
    const paths = (info as Packed).files.map((f) => f.path);
    expect(paths).toContain('LICENSE');
    expect(paths).toContain('README.md');
    expect(paths).toContain('package.json');
    expect(paths.filter((p) => p.endsWith('.tsbuildinfo'))).toEqual([]);
    expect(paths.filter((p) => /(^|\/)test\/|\.test\.[cm]?[jt]s$/.test(p))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string | Record<string, string>>>;
    };
    // Every file the exports map names is in the tarball.
    const targets = Object.values(manifest.exports).flatMap((target) =>
      typeof target === 'string'
        ? [target]
        : Object.values(target).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t))),
    );
    for (const target of targets) expect(paths, `${info?.name} ships ${target}`).toContain(target.slice(2));
  });
});

describe('installed into an app outside the workspace', () => {
  it('every entry point loads as ESM (import) and as CommonJS (require), with its exports', async () => {
    expect(await ok('node', ['entry-points.mjs'], app)).toContain('entry points: ok');
    expect(await ok('node', ['entry-points.cjs'], app)).toContain('entry points: ok');
  });

  it('the quick starts type-check with skipLibCheck false under node16 (ESM and CommonJS) and under bundler', async () => {
    const tolerated = await Promise.all([typecheck('tsconfig.node16.json'), typecheck('tsconfig.bundler.json')]);
    console.log(
      `skipLibCheck false: 0 errors in lagless and the app; ${tolerated.join(' and ')} in drizzle-orm's own .d.ts`,
    );
  }, 600_000);

  it('the quick starts run against a testkit cluster, and the process exits by itself', async () => {
    // tsc above emitted out/ (node16); the cluster comes from the installed @lagless/testkit.
    const esm = await ok('node', ['out/run.js', 'prisma', 'drizzle', 'core'], app, 120_000);
    expect(esm).toContain('prisma quick start: ok');
    expect(esm).toContain('drizzle quick start: ok');
    expect(esm).toContain('core quick start: ok');
    const cjs = await ok('node', ['run.cjs'], app, 120_000);
    expect(cjs).toContain('commonjs: ok');
  }, 300_000);

  it(`the drizzle quick start also type-checks and runs on drizzle-orm ${LOWEST_DRIZZLE}`, async () => {
    await ok(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', `drizzle-orm@${LOWEST_DRIZZLE}`],
      app,
      300_000,
    );
    const installed = JSON.parse(readFileSync(join(app, 'node_modules/drizzle-orm/package.json'), 'utf8')) as {
      version: string;
    };
    expect(installed.version).toBe(LOWEST_DRIZZLE);
    await ok('npx', ['--no-install', 'tsc', '-p', 'tsconfig.matrix.json'], app);
    expect(await ok('node', ['out/run.js', 'drizzle'], app, 120_000)).toContain('drizzle quick start: ok');
  }, 600_000);
});
