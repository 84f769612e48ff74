// Builds every package: ESM and declarations with `tsc -b`, then a CommonJS copy of each module in
// dist/cjs beside them. Each package.json's `exports` sends `import` to dist/ and `require` to
// dist/cjs/, each with its own types, so a CommonJS app type-checks against CommonJS declarations.
//
// The CommonJS files are transpiled one by one (no second type-check: `tsc -b` already checked the
// same sources). dist/ is removed first so a module deleted from src/ cannot linger in a tarball.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packagesDir = join(root, 'packages');
const packages = readdirSync(packagesDir).filter((name) => existsSync(join(packagesDir, name, 'tsconfig.json')));

// import.meta does not exist in CommonJS; the file's own URL is what every use here needs.
const IMPORT_META_URL = /\bimport\.meta\.url\b/g;
const CJS_IMPORT_META_URL = "require('node:url').pathToFileURL(__filename).href";

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function writeCommonJs(pkgDir: string): number {
  const srcDir = join(pkgDir, 'src');
  const esmDir = join(pkgDir, 'dist');
  const cjsDir = join(esmDir, 'cjs');
  mkdirSync(cjsDir, { recursive: true });
  writeFileSync(join(cjsDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
  const files = sourceFiles(srcDir);
  for (const file of files) {
    const rel = relative(srcDir, file).replace(/\.ts$/, '');
    const outJs = join(cjsDir, `${rel}.js`);
    mkdirSync(dirname(outJs), { recursive: true });
    // A .cts name makes the file CommonJS under node16 while `import()` stays a real dynamic import,
    // which ESM-only optional dependencies need.
    const result = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file.replace(/\.ts$/, '.cts'),
      compilerOptions: {
        module: ts.ModuleKind.Node16,
        moduleResolution: ts.ModuleResolutionKind.Node16,
        target: ts.ScriptTarget.ES2022,
        sourceMap: true,
        esModuleInterop: true,
        isolatedModules: true,
      },
      reportDiagnostics: true,
    });
    const errors = (result.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length > 0) {
      throw new Error(
        `${relative(root, file)}: ${errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`,
      );
    }
    const code = result.outputText
      .replace(IMPORT_META_URL, CJS_IMPORT_META_URL)
      .replace(/\/\/# sourceMappingURL=.*$/m, `//# sourceMappingURL=${rel.split('/').pop()}.js.map`);
    writeFileSync(outJs, code);
    const map = JSON.parse(result.sourceMapText ?? '{}') as { sources?: string[]; file?: string };
    map.file = `${rel.split('/').pop()}.js`;
    map.sources = [relative(dirname(outJs), file)];
    writeFileSync(`${outJs}.map`, JSON.stringify(map));
    // The ESM declarations describe the same exports; under dist/cjs (type: commonjs) they are read as CommonJS.
    const declaration = join(esmDir, `${rel}.d.ts`);
    if (existsSync(declaration)) {
      const text = readFileSync(declaration, 'utf8')
        .replace(/\/\/# sourceMappingURL=.*$/m, '')
        .trimEnd();
      writeFileSync(join(cjsDir, `${rel}.d.ts`), `${text}\n`);
    }
  }
  return files.length;
}

const started = performance.now();
for (const name of packages) rmSync(join(packagesDir, name, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-b'], { cwd: root, stdio: 'inherit' });
let modules = 0;
for (const name of packages) modules += writeCommonJs(join(packagesDir, name));
console.log(
  `built ${packages.length} packages (${modules} modules, ESM and CommonJS) in ${Math.round(performance.now() - started)} ms`,
);
