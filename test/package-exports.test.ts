// Every package's `exports` map points at files the build produced, for `import` and for `require`,
// each with its own declarations, and the built entry points load under plain Node resolution (no
// source condition, no vitest alias). `npm test` builds first; test/pack/ then installs the packed
// tarballs into an app outside the workspace.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EXPECTED_EXPORTS } from './pack/scratch-app.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const requireFromHere = createRequire(import.meta.url);
const packages = readdirSync(join(root, 'packages')).filter((name) =>
  existsSync(join(root, 'packages', name, 'package.json')),
);

interface Branch {
  types: string;
  default: string;
}

interface EntryPoint {
  'lagless-source': string;
  import: Branch;
  require: Branch;
}

describe.each(packages)('package %s', (dir) => {
  const pkgDir = join(root, 'packages', dir);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
    name: string;
    type?: string;
    main?: string;
    types?: string;
    exports: Record<string, EntryPoint | string>;
  };

  it('is an ES module with an exports map, and main/types for resolvers that ignore it', () => {
    expect(pkg.type).toBe('module');
    expect(pkg.exports['.']).toBeTypeOf('object');
    expect(existsSync(join(pkgDir, pkg.main ?? 'missing'))).toBe(true);
    expect(existsSync(join(pkgDir, pkg.types ?? 'missing'))).toBe(true);
    expect(readFileSync(join(pkgDir, 'dist/cjs/package.json'), 'utf8')).toContain('"commonjs"');
  });

  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue;
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;

    it(`${specifier}: source, ESM and CommonJS targets exist, each with its declarations`, () => {
      // Object key order is condition priority: types must come before the code it describes.
      expect(Object.keys(target)).toEqual(['lagless-source', 'import', 'require']);
      for (const branch of [target.import, target.require]) expect(Object.keys(branch)).toEqual(['types', 'default']);
      for (const file of [
        target['lagless-source'],
        target.import.types,
        target.import.default,
        target.require.types,
        target.require.default,
      ]) {
        expect(existsSync(join(pkgDir, file)), `${specifier} → ${file}`).toBe(true);
      }
      expect(target.require.default.startsWith('./dist/cjs/')).toBe(true);
    });

    it(`${specifier}: the built module loads both ways with the same exports`, async () => {
      const esm = (await import(pathToFileURL(join(pkgDir, target.import.default)).href)) as Record<string, unknown>;
      const cjs = requireFromHere(join(pkgDir, target.require.default)) as Record<string, unknown>;
      for (const name of EXPECTED_EXPORTS[specifier] ?? []) {
        expect(esm[name], `import('${specifier}') exports ${name}`).toBeDefined();
        expect(cjs[name], `require('${specifier}') exports ${name}`).toBeDefined();
      }
      expect(Object.keys(cjs).sort()).toEqual(Object.keys(esm).sort());
    });
  }
});
