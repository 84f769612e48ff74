// The files of the scratch app that pack-install.test.ts installs the tarballs into. The Prisma and
// Drizzle quick starts are cut out of README.md itself, so the README cannot drift from what
// compiles and runs: its imports are hoisted, its statements become the body of a function that
// gets the cluster's URLs, and a few lines after them close what the snippet opened.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const PACKAGES = ['core', 'prisma', 'drizzle', 'testkit'] as const;

export interface PackedFile {
  path: string;
  size: number;
}

/** Names each entry point must export, whichever way it is loaded. */
export const EXPECTED_EXPORTS: Record<string, string[]> = {
  '@lagless/core': [
    'createRouter',
    'Router',
    'LaglessError',
    'isLaglessError',
    'parseLsn',
    'MemoryTokenStore',
    'laglessHandle',
    'ROUTER_OPTION_NAMES',
  ],
  '@lagless/core/redis': ['redisTokenStore'],
  '@lagless/core/http': ['withTokenScope', 'tokenMiddleware', 'tokenPlugin', 'readToken', 'TOKEN_HEADER'],
  '@lagless/core/pg': ['pgNode'],
  '@lagless/core/otel': ['instrumentRouter'],
  '@lagless/drizzle': ['withReplicas'],
  '@lagless/prisma': ['laglessAdapter', 'readReplicas', 'isLaglessAdapter'],
  '@lagless/testkit': ['startCluster', 'createFaultProxy', 'startRedis', 'TestkitError'],
};

/** The third-party packages of the scratch app, at the versions the workspace tests with. */
const THIRD_PARTY = [
  '@prisma/client',
  '@prisma/adapter-pg',
  'prisma',
  'drizzle-orm',
  'pg',
  'postgres',
  'ioredis',
  '@opentelemetry/api',
  'typescript',
  '@types/node',
] as const;

export function peerVersions(root: string): Record<string, string> {
  return Object.fromEntries(
    THIRD_PARTY.map((name) => {
      const manifest = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      };
      return [name, manifest.version];
    }),
  );
}

export function packageJson(tarballs: Record<string, string>, versions: Record<string, string>): string {
  return `${JSON.stringify(
    {
      name: 'lagless-scratch-app',
      private: true,
      type: 'module',
      dependencies: { ...tarballs, ...versions },
      // The adapters depend on @lagless/core 0.1.0, which is not on the registry: the tarball is.
      overrides: { '@lagless/core': tarballs['@lagless/core'] },
    },
    null,
    2,
  )}\n`;
}

/** The first ```ts block after `heading` in the README. */
function snippet(readme: string, heading: string): { imports: string[]; body: string[] } {
  const at = readme.indexOf(`\n${heading}\n`);
  if (at === -1) throw new Error(`README.md has no "${heading}" section`);
  const start = readme.indexOf('```ts\n', at);
  const end = readme.indexOf('\n```', start + 6);
  if (start === -1 || end === -1) throw new Error(`README.md's "${heading}" section has no ts code block`);
  const lines = readme.slice(start + 6, end).split('\n');
  return {
    imports: lines.filter((line) => line.startsWith('import ')),
    body: lines.filter((line) => !line.startsWith('import ')).map((line) => `  ${line}`),
  };
}

const URL_PARAMS = 'PRIMARY_URL: string, REPLICA1_URL: string, REPLICA2_URL: string';

export function quickStartSources(readme: string): Record<string, string> {
  const prisma = snippet(readme, '## Quick start: Prisma');
  const drizzle = snippet(readme, '## Quick start: Drizzle');
  const expected = JSON.stringify(EXPECTED_EXPORTS, null, 2);
  return {
    'prisma/schema.prisma': `generator client {
  provider            = "prisma-client"
  output              = "../generated"
  moduleFormat        = "esm"
  importFileExtension = "js"
}

datasource db {
  provider = "postgresql"
}

model User {
  id    Int    @id @default(autoincrement())
  email String @unique
  name  String
}

model Post {
  id    Int    @id @default(autoincrement())
  title String
}
`,
    'schema.ts': `import { pgTable, serial, text } from 'drizzle-orm/pg-core'

export const users = pgTable('users', {
  id: serial('id').primaryKey(),
  email: text('email').notNull(),
  name: text('name').notNull(),
})

export const posts = pgTable('posts', {
  id: serial('id').primaryKey(),
  title: text('title').notNull(),
})
`,
    'quickstart-prisma.ts': `// Cut from README.md, "Quick start: Prisma".
import { PrismaClient } from './generated/client.js'
${prisma.imports.join('\n')}

export async function prismaQuickStart(${URL_PARAMS}): Promise<void> {
  const data = { email: \`ada-\${Date.now()}@example.com\`, name: 'Ada' }
${prisma.body.join('\n')}
  const served = prisma.$lagless.stats().reads
  if (served.replica === 0) throw new Error('prisma: no read went to a replica')
  await prisma.$lagless.close()
  await prisma.$disconnect()
}
`,
    'quickstart-drizzle.ts': `// Cut from README.md, "Quick start: Drizzle".
import { eq } from 'drizzle-orm'
import pg from 'pg'
import * as schema from './schema.js'
${drizzle.imports.join('\n')}

export async function drizzleQuickStart(${URL_PARAMS}): Promise<void> {
  const { users, posts } = schema
  const data = { title: 'hello' }
${drizzle.body.join('\n')}
  const served = db.$lagless.stats().reads
  if (served.replica === 0) throw new Error('drizzle: no read went to a replica')
  await db.$lagless.close()
  await Promise.all([primary, ...replicas].map((node) => node.$client.end()))
}
`,
    'quickstart-core.ts': `import { createRouter } from '@lagless/core'
import { withTokenScope } from '@lagless/core/http'
import { pgNode } from '@lagless/core/pg'

export async function coreQuickStart(${URL_PARAMS}): Promise<void> {
  const primary = pgNode('primary', PRIMARY_URL)
  const replicas = [pgNode('replica1', REPLICA1_URL), pgNode('replica2', REPLICA2_URL)]
  const router = createRouter({ primary, replicas, balancer: 'least-connections' })
  await router.ready()
  const body = \`note-\${Date.now()}\`
  const token = await router.session(async () => {
    await router.write((pool) => pool.query('INSERT INTO notes (body) VALUES ($1)', [body]))
    const { rows } = await router.read((pool) => pool.query('SELECT body FROM notes WHERE body = $1', [body]))
    if (rows.length !== 1) throw new Error('core: a session did not see its own write')
    return router.token()
  })
  if (token === undefined) throw new Error('core: a session that wrote has no token')
  // The next request, carrying the token in its header.
  const response = await withTokenScope(
    router,
    new Request('http://app.test/notes', { headers: { 'x-lagless-token': token } }),
    async () => {
      const { rows } = await router.read((pool) => pool.query('SELECT body FROM notes WHERE body = $1', [body]))
      return Response.json(rows)
    },
  )
  const rows = (await response.json()) as unknown[]
  if (rows.length !== 1) throw new Error('core: the next request did not see the write its token carries')
  await router.close()
  await Promise.all([primary, ...replicas].map((node) => node.end()))
}
`,
    'run.ts': `import { startCluster } from '@lagless/testkit'
import { coreQuickStart } from './quickstart-core.js'
import { drizzleQuickStart } from './quickstart-drizzle.js'
import { prismaQuickStart } from './quickstart-prisma.js'

const wanted = new Set(process.argv.slice(2))
const cluster = await startCluster({ replicas: 2 })
try {
  await cluster.primary.query('CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)')
  await cluster.primary.query('CREATE TABLE "Post" (id serial PRIMARY KEY, title text NOT NULL)')
  await cluster.primary.query('CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, name text NOT NULL)')
  await cluster.primary.query('CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL)')
  await cluster.primary.query('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)')
  await cluster.waitForReplicas()
  const urls = [cluster.primary.url, cluster.replicas[0]!.url, cluster.replicas[1]!.url] as const
  if (wanted.has('prisma')) {
    await prismaQuickStart(...urls)
    console.log('prisma quick start: ok')
  }
  if (wanted.has('drizzle')) {
    await drizzleQuickStart(...urls)
    console.log('drizzle quick start: ok')
  }
  if (wanted.has('core')) {
    await coreQuickStart(...urls)
    console.log('core quick start: ok')
  }
} finally {
  await cluster.stop()
}
`,
    // CommonJS types: a .cts file is CommonJS under node16, so these resolve the "require" branch.
    'quickstart-cjs.cts': `import { createRouter, isLaglessError } from '@lagless/core'
import { tokenMiddleware } from '@lagless/core/http'
import { pgNode } from '@lagless/core/pg'
import { redisTokenStore } from '@lagless/core/redis'
import { withReplicas } from '@lagless/drizzle'
import { laglessAdapter, readReplicas } from '@lagless/prisma'
import { startCluster } from '@lagless/testkit'
import { drizzle } from 'drizzle-orm/node-postgres'
import { Redis } from 'ioredis'

export async function commonJsTypes(url: string): Promise<boolean> {
  const primary = drizzle(url)
  const db = withReplicas(primary, [drizzle(url)], { balancer: 'round-robin' })
  const router = createRouter({ primary: pgNode('primary', url), replicas: [], tokenStore: redisTokenStore(new Redis()) })
  const middleware: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, next: () => void) => void =
    tokenMiddleware(router)
  void [db.$lagless.stats(), middleware, laglessAdapter, readReplicas, startCluster]
  return isLaglessError(new Error('x'))
}
`,
    'run.cjs': `// The same packages through require(): a cluster, a drizzle database and a core router.
const { createRouter } = require('@lagless/core')
const { pgNode } = require('@lagless/core/pg')
const { withReplicas } = require('@lagless/drizzle')
const { startCluster } = require('@lagless/testkit')
const { drizzle } = require('drizzle-orm/node-postgres')
const { sql } = require('drizzle-orm')
const pg = require('pg')

async function main() {
  const cluster = await startCluster({ replicas: 1 })
  try {
    await cluster.primary.query('CREATE TABLE t (id int)')
    const primary = drizzle(new pg.Pool({ connectionString: cluster.primary.url }))
    const replica = drizzle(new pg.Pool({ connectionString: cluster.replicas[0].url }))
    const db = withReplicas(primary, [replica])
    await db.$lagless.session(async () => {
      await db.execute(sql\`INSERT INTO t VALUES (1)\`)
      const rows = await db.select({ n: sql\`count(*)::int\` }).from(sql\`t\`)
      if (rows[0].n !== 1) throw new Error('commonjs: a session did not see its own write')
    })
    await db.$lagless.close()
    await Promise.all([primary, replica].map((d) => d.$client.end()))

    const nodes = [pgNode('primary', cluster.primary.url), pgNode('replica', cluster.replicas[0].url)]
    const router = createRouter({ primary: nodes[0], replicas: [nodes[1]] })
    await router.ready()
    const rows = await router.read((pool) => pool.query('SELECT pg_is_in_recovery() AS standby'))
    if (rows.rows[0].standby !== true) throw new Error('commonjs: a read did not go to the replica')
    await router.close()
    await Promise.all(nodes.map((node) => node.end()))
  } finally {
    await cluster.stop()
  }
  console.log('commonjs: ok')
}
main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
`,
    'entry-points.mjs': `const expected = ${expected}
for (const [specifier, names] of Object.entries(expected)) {
  const mod = await import(specifier)
  for (const name of names) if (mod[name] === undefined) throw new Error(\`import('\${specifier}') has no \${name}\`)
}
console.log('entry points: ok')
`,
    'entry-points.cjs': `const expected = ${expected}
for (const [specifier, names] of Object.entries(expected)) {
  const mod = require(specifier)
  for (const name of names) if (mod[name] === undefined) throw new Error(\`require('\${specifier}') has no \${name}\`)
}
console.log('entry points: ok')
`,
    'tsconfig.node16.json': `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'node16',
          moduleResolution: 'node16',
          strict: true,
          skipLibCheck: false,
          outDir: 'out',
          types: ['node'],
        },
        include: ['*.ts', '*.cts', 'generated/**/*.ts'],
      },
      null,
      2,
    )}\n`,
    // The drizzle-orm matrix re-checks the app against another drizzle's types; lagless's own
    // declarations were held to skipLibCheck false above.
    'tsconfig.matrix.json': `${JSON.stringify(
      { extends: './tsconfig.node16.json', compilerOptions: { skipLibCheck: true } },
      null,
      2,
    )}\n`,
    'tsconfig.bundler.json': `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'preserve',
          moduleResolution: 'bundler',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
        },
        include: ['*.ts', '*.cts', 'generated/**/*.ts'],
      },
      null,
      2,
    )}\n`,
  };
}
