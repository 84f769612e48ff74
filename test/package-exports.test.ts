// Every package's `exports` map points at files the build produced, and the built entry points load
// under plain Node resolution (no source condition, no vitest alias). `npm test` builds with `tsc -b` first.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packages = readdirSync(join(root, 'packages')).filter((name) =>
  existsSync(join(root, 'packages', name, 'package.json')),
);

type Conditions = Record<string, string>;

const expectedExports: Record<string, string[]> = {
  '@lagless/core': ['createRouter', 'Router', 'LaglessError', 'isLaglessError', 'parseLsn', 'MemoryTokenStore'],
  '@lagless/core/redis': ['redisTokenStore'],
  '@lagless/core/http': ['withTokenScope', 'tokenMiddleware', 'readToken', 'TOKEN_HEADER'],
  '@lagless/core/pg': ['pgNode'],
  '@lagless/drizzle': ['withReplicas'],
  '@lagless/prisma': ['laglessAdapter', 'readReplicas', 'isLaglessAdapter'],
  '@lagless/testkit': ['startCluster', 'createFaultProxy', 'startRedis', 'TestkitError'],
};

describe.each(packages)('package %s', (dir) => {
  const pkgDir = join(root, 'packages', dir);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
    name: string;
    type?: string;
    exports: Record<string, Conditions | string>;
  };

  it('is an ES module with an exports map', () => {
    expect(pkg.type).toBe('module');
    expect(pkg.exports['.']).toBeTypeOf('object');
  });

  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue;
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
    it(`${specifier}: types, import and source targets exist, and the built module loads`, async () => {
      for (const condition of ['types', 'import', 'lagless-source']) {
        const file = target[condition];
        expect(file, `${specifier} has a "${condition}" condition`).toBeTypeOf('string');
        expect(existsSync(join(pkgDir, file as string)), `${specifier} → ${file}`).toBe(true);
      }
      const mod = (await import(pathToFileURL(join(pkgDir, target.import as string)).href)) as Record<string, unknown>;
      for (const name of expectedExports[specifier] ?? [])
        expect(mod[name], `${specifier} exports ${name}`).toBeDefined();
    });
  }
});
