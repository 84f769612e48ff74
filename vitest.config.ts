import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string): string => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

// The drizzle adapter's suites run twice: on the workspace's drizzle-orm (the highest the peer range
// accepts) and on `drizzle-orm-044`, an npm alias of the lowest.
const drizzleSuites = ['packages/drizzle/test/**/*.test.ts', 'test/peer/drizzle/**/*.test.ts'];

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
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two files at a time: most of a test's time is spent waiting on servers, not on this process.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
