import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const pkg = (name: string): string => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

// The drizzle adapter's suites that check drizzle's internals and its routing run twice: on the
// workspace's drizzle-orm (the highest the peer range accepts) and on `drizzle-orm-044`, an npm alias
// of the lowest. The ported upstream suite covers routing through every builder on both drivers; the
// adapter's own routing and consistency suites go through the same seams and run once, for time.
const drizzleSuites = [
  'packages/drizzle/test/drizzle-compat.test.ts',
  'packages/drizzle/test/cte.test.ts',
  'test/peer/drizzle/**/*.test.ts',
];

// Files that wait on npm, tsc or a long story start first, so two workers do not finish on them alone.
const LONG_FIRST = [
  'test/pack/pack-install.test.ts',
  'examples/demo/status-page.test.ts',
  'test/http/cross-instance.test.ts',
  'test/peer/drizzle/replicas.test.ts',
];

class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification) => {
      const at = LONG_FIRST.findIndex((suffix) => file.moduleId.endsWith(suffix));
      return at === -1 ? LONG_FIRST.length : at;
    };
    return sorted
      .map((file, index) => ({ file, index }))
      .sort((a, b) => rank(a.file) - rank(b.file) || a.index - b.index)
      .map(({ file }) => file);
  }
}

export default defineConfig({
  resolve: {
    // Tests run against source: no build step between an edit and a test run.
    alias: [
      { find: /^@lagless\/testkit$/, replacement: pkg('testkit') },
      { find: /^@lagless\/core$/, replacement: pkg('core') },
      { find: /^@lagless\/prisma$/, replacement: pkg('prisma') },
      { find: /^@lagless\/drizzle$/, replacement: pkg('drizzle') },
      {
        find: /^@lagless\/core\/http$/,
        replacement: fileURLToPath(new URL('./packages/core/src/http.ts', import.meta.url)),
      },
      {
        find: /^@lagless\/core\/pg$/,
        replacement: fileURLToPath(new URL('./packages/core/src/pg.ts', import.meta.url)),
      },
      {
        find: /^@lagless\/core\/otel$/,
        replacement: fileURLToPath(new URL('./packages/core/src/otel.ts', import.meta.url)),
      },
      {
        find: /^@lagless\/core\/redis$/,
        replacement: fileURLToPath(new URL('./packages/core/src/redis.ts', import.meta.url)),
      },
    ],
  },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          env: { LAGLESS_DRIZZLE_VERSION: '0.45.4' },
          include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
        },
      },
      {
        extends: true,
        resolve: { alias: [{ find: /^drizzle-orm(\/.*)?$/, replacement: 'drizzle-orm-044$1' }] },
        test: { name: 'drizzle-orm@0.44', include: drizzleSuites, env: { LAGLESS_DRIZZLE_VERSION: '0.44.7' } },
      },
    ],
    sequence: { sequencer: LongFirstSequencer },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two files at a time: most of a test's time is spent waiting on servers, not on this process.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
