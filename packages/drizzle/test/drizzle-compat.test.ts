// The contract between this adapter and drizzle-orm's internals, asserted against the installed
// drizzle-orm with its own builders over a recording session (no database). When an upgrade breaks
// one, the failure says which internal changed and what to look at; see src/drizzle-compat.ts.
import { readFileSync } from 'node:fs';
import { isLaglessError, type Router } from '@lagless/core';
import { type Query, SQL, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import {
  integer,
  PgDatabase,
  PgDialect,
  PgInsertBase,
  PgPreparedQuery,
  type PgQueryResultHKT,
  PgSession,
  type PreparedQueryConfig,
  pgTable,
  text,
} from 'drizzle-orm/pg-core';
import {
  createTableRelationsHelpers,
  type ExtractTablesWithRelations,
  extractTablesRelationalConfig,
} from 'drizzle-orm/relations';
import { npmVersion } from 'drizzle-orm/version';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cteSql,
  databaseInternals,
  drizzleVersion,
  type Incompatibility,
  inspectDrizzle,
  JOINS_NULLABILITY,
  queryMetadataOf,
  queryOf,
  READING_WITH_BUILDERS,
  SUPPORTED_DRIZZLE,
} from '../src/drizzle-compat.js';
import { withReplicas } from '../src/index.js';
import { RoutingSession } from '../src/routing-session.js';

const users = pgTable('users', { id: integer('id').primaryKey(), name: text('name') });
const pets = pgTable('pets', { id: integer('id').primaryKey(), ownerId: integer('owner_id') });

class Recorded extends PgPreparedQuery<PreparedQueryConfig> {
  readonly args: readonly unknown[];
  readonly runs: unknown[][] = [];
  [JOINS_NULLABILITY]: unknown;
  token: unknown;

  constructor(args: readonly unknown[]) {
    super(queryOf(args) as Query, undefined, undefined, undefined);
    this.args = args;
  }

  setToken(token: unknown): this {
    this.token = token;
    return this;
  }

  execute(...args: unknown[]): Promise<unknown> {
    this.runs.push(args);
    return Promise.resolve([{ count: 7 }]);
  }

  all(...args: unknown[]): Promise<unknown> {
    this.runs.push(args);
    return Promise.resolve([]);
  }
}

/** Records what drizzle's builders hand the session; runs nothing. */
class Recorder extends PgSession<PgQueryResultHKT, Record<string, unknown>, Record<string, never>> {
  readonly prepared: Recorded[] = [];
  readonly counted: unknown[][] = [];
  readonly executed: unknown[][] = [];

  override prepareQuery(...args: Parameters<PgSession['prepareQuery']>): Recorded {
    const prepared = new Recorded(args);
    this.prepared.push(prepared);
    return prepared;
  }

  override count(...args: [SQL]): Promise<number> {
    this.counted.push(args);
    return Promise.resolve(7);
  }

  override execute<T>(...args: [SQL]): Promise<T> {
    this.executed.push(args);
    return Promise.resolve([] as T);
  }

  override transaction<T>(): Promise<T> {
    return Promise.reject(new Error('not here'));
  }
}

function recordingDb() {
  const fullSchema = { users, pets };
  const { tables, tableNamesMap } = extractTablesRelationalConfig(fullSchema, createTableRelationsHelpers);
  const dialect = new PgDialect();
  const session = new Recorder(dialect);
  const db = new PgDatabase<PgQueryResultHKT, typeof fullSchema, ExtractTablesWithRelations<typeof fullSchema>>(
    dialect,
    session,
    { fullSchema, schema: tables, tableNamesMap } as never,
  );
  return { db, session, dialect };
}

/** The one call a builder's prepare() made, failing with `what` when there was not exactly one. */
function lastPrepared(session: Recorder, before: number, what: string): Recorded {
  const calls = session.prepared.slice(before);
  expect(
    calls,
    `${what} no longer calls session.prepareQuery() exactly once (drizzle-orm ${drizzleVersion})`,
  ).toHaveLength(1);
  return calls[0] as Recorded;
}

const explain = (problems: Incompatibility[]) =>
  problems.map((p) => `\n  ${p.internal}: expected ${p.expected}, found ${p.found}`).join('');

describe(`drizzle-orm ${drizzleVersion} internals`, () => {
  it('are all as src/drizzle-compat.ts expects (what withReplicas() checks at run time)', () => {
    const problems = inspectDrizzle();
    expect(problems, `changed in drizzle-orm ${drizzleVersion}:${explain(problems)}`).toEqual([]);
  });

  it('the installed release is in the supported range, which is the package peer range', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      peerDependencies: Record<string, string>;
    };
    expect(manifest.peerDependencies['drizzle-orm'], 'SUPPORTED_DRIZZLE and the peer range disagree').toBe(
      SUPPORTED_DRIZZLE,
    );
    expect(drizzleVersion).toBe(npmVersion);
    // The vitest project that runs these suites on another drizzle-orm names the release it expects.
    if (process.env.LAGLESS_DRIZZLE_VERSION) expect(drizzleVersion).toBe(process.env.LAGLESS_DRIZZLE_VERSION);
    const [major, minor] = drizzleVersion.split('.').map(Number);
    // >=0.44 <0.46, spelled out: the test fails, not a semver library, when the range moves.
    expect(major === 0 && (minor === 44 || minor === 45), `drizzle-orm ${drizzleVersion} is outside the range`).toBe(
      true,
    );
  });

  it('PgDatabase has exactly the query methods with-replicas.ts routes (a new one must be routed)', () => {
    const methods = Object.getOwnPropertyNames(PgDatabase.prototype)
      .filter((name) => name !== 'constructor')
      .sort();
    expect(
      methods,
      `PgDatabase's methods changed in drizzle-orm ${drizzleVersion}: decide where each new one runs in with-replicas.ts`,
    ).toEqual(
      [
        '$count',
        'delete',
        'execute',
        'insert',
        'refreshMaterializedView',
        'select',
        'selectDistinct',
        'selectDistinctOn',
        'transaction',
        'update',
        'with',
      ].sort(),
    );
  });

  it('a drizzle() database keeps dialect, session, _ and $client where databaseInternals() reads them', () => {
    const db = drizzle.mock({ schema: { users } });
    const fields = db as unknown as Record<string, unknown>;
    expect(fields.dialect, 'db.dialect').toBeInstanceOf(PgDialect);
    expect(fields.session, 'db.session').toBeInstanceOf(PgSession);
    expect(fields._, 'db._ (the relational schema)').toMatchObject({
      schema: expect.any(Object),
      fullSchema: expect.any(Object),
      tableNamesMap: expect.any(Object),
    });
    expect(Object.keys(db), 'own fields of a drizzle() database').toEqual(
      expect.arrayContaining(['query', '$with', 'dialect', 'session', '_', '$client']),
    );
    expect(databaseInternals(db, 'primary').session).toBe(fields.session);
  });

  it('new PgDatabase(dialect, session, schema) builds every builder, relational ones included, on that session', () => {
    const { db, session, dialect } = recordingDb();
    expect((db as unknown as { session: unknown }).session).toBe(session);
    expect((db as unknown as { dialect: unknown }).dialect).toBe(dialect);
    const before = session.prepared.length;
    db.query.users.findMany({ with: {} }).prepare('q');
    db.query.users.findFirst().prepare('q');
    expect(session.prepared.length - before, 'query.* builders no longer prepare on the database session').toBe(2);
  });

  describe('what builders hand prepareQuery()', () => {
    const kinds = [
      ['select', (db: ReturnType<typeof recordingDb>['db']) => db.select().from(users)],
      ['selectDistinct', (db: ReturnType<typeof recordingDb>['db']) => db.selectDistinct().from(users)],
      ['insert', (db: ReturnType<typeof recordingDb>['db']) => db.insert(users).values({ id: 1 })],
      ['update', (db: ReturnType<typeof recordingDb>['db']) => db.update(users).set({ name: 'x' })],
      ['delete', (db: ReturnType<typeof recordingDb>['db']) => db.delete(users)],
    ] as const;

    it.each(kinds)('%s: the statement as { sql, params } and query metadata { type, tables }', (kind, build) => {
      const { db, session } = recordingDb();
      const before = session.prepared.length;
      build(db).prepare('q');
      const { args } = lastPrepared(session, before, `${kind}().prepare()`);
      expect(queryOf(args)?.sql, `${kind}: no { sql, params } argument`).toMatch(/^(select|insert|update|delete)\b/);
      const metadata = queryMetadataOf(args);
      expect(metadata, `${kind}: no { type, tables } argument; the guard keeping writes off replicas needs it`).toEqual(
        {
          type: expect.any(String),
          tables: ['users'],
        },
      );
      // Only 'select' may reach a replica; drizzle-orm 0.44 and 0.45 label an update 'insert'.
      expect(metadata?.type === 'select', `${kind} is labelled ${metadata?.type}`).toBe(kind.startsWith('select'));
    });

    it('relational queries pass no metadata: they are reads, routed by the session they are built on', () => {
      const { db, session } = recordingDb();
      const before = session.prepared.length;
      db.query.users.findMany().prepare('q');
      const { args } = lastPrepared(session, before, 'query.users.findMany().prepare()');
      expect(queryOf(args)?.sql).toMatch(/^select\b/);
      expect(queryMetadataOf(args)?.type ?? 'select').toBe('select');
    });

    it(`select sets ${JOINS_NULLABILITY} on the prepared query prepareQuery() returned`, () => {
      const { db, session } = recordingDb();
      const before = session.prepared.length;
      const returned = db.select().from(users).leftJoin(pets, sql`true`).prepare('q');
      const prepared = lastPrepared(session, before, 'select().prepare()');
      expect(returned, 'select().prepare() no longer returns what prepareQuery() returned').toBe(prepared);
      expect(prepared[JOINS_NULLABILITY], `${JOINS_NULLABILITY} moved or was renamed`).toEqual({
        users: true,
        pets: false,
      });
    });

    it('execute() prepares on the session, then runs the prepared query with (placeholders, auth token)', async () => {
      const { db, session } = recordingDb();
      const before = session.prepared.length;
      await db.execute(sql`select 1`);
      const prepared = lastPrepared(session, before, 'execute()');
      expect(prepared.runs).toEqual([[undefined, undefined]]);
    });

    it('$count() runs through session.count(sql, token)', async () => {
      const { db, session } = recordingDb();
      expect(await db.$count(users)).toBe(7);
      expect(session.counted).toHaveLength(1);
      expect(session.counted[0]?.[0]).toBeInstanceOf(SQL);
    });
  });

  it('a $with(...).as(...) CTE keeps its rendered SQL in _.sql (what cte.ts judges)', () => {
    const { db, dialect } = recordingDb();
    const cte = db.$with('c').as(db.select().from(users));
    const found = cteSql(cte);
    expect(found, '$with(...).as(...)._.sql is no longer an SQL').toBeInstanceOf(SQL);
    expect(dialect.sqlToQuery(found as SQL).sql).toMatch(/^select\b/);
  });

  it('with(...) returns the builders routedWith knows; new ones go to the primary until listed', () => {
    const { db } = recordingDb();
    const builders = Object.keys(db.with()).sort();
    expect(
      builders,
      `with() changed in drizzle-orm ${drizzleVersion}: list new reading builders in READING_WITH_BUILDERS`,
    ).toEqual(['delete', 'insert', 'select', 'selectDistinct', 'selectDistinctOn', 'update']);
    for (const name of READING_WITH_BUILDERS) expect(builders).toContain(name);
  });
});

describe('found by shape, not by position', () => {
  it('query metadata and the statement are found wherever they sit among the arguments', () => {
    const query = { sql: 'select 1', params: [] };
    const metadata = { type: 'delete', tables: ['t'] };
    expect(queryMetadataOf([query, undefined, 'name', true, undefined, metadata])).toBe(metadata);
    expect(queryMetadataOf([metadata, query])).toBe(metadata);
    expect(queryMetadataOf([query, [{ path: ['id'] }], undefined, false])).toBeUndefined();
    expect(queryOf([undefined, metadata, query])).toBe(query);
    // A cache config is not metadata.
    expect(queryMetadataOf([query, { enable: true, tag: 'x' }])).toBeUndefined();
  });

  it('a routing session sends any statement labelled other than select to the primary, and forwards every argument', async () => {
    const calls: string[] = [];
    const node = recordingDb();
    const router = {
      read: (fn: (db: unknown) => unknown) => {
        calls.push('read');
        return fn(node.db);
      },
      write: (fn: (db: unknown) => unknown) => {
        calls.push('write');
        return fn(node.db);
      },
    } as unknown as Router<unknown>;
    const session = new RoutingSession(node.dialect, router, 'read');
    const query = { sql: 'merge into t using s on true when matched then do nothing', params: [] };
    const token = { jwt: 'x' };
    // A kind drizzle does not have today, at a position it does not use today.
    const args = [query, undefined, 'stmt', true, undefined, undefined, undefined, { type: 'merge', tables: ['t'] }];
    const prepared = (session.prepareQuery as (...a: unknown[]) => PgPreparedQuery<PreparedQueryConfig>)(...args);
    (prepared as unknown as Recorded).setToken(token);
    await (prepared.execute as (...a: unknown[]) => Promise<unknown>)({ id: 1 }, token);
    expect(calls).toEqual(['write']);
    const onNode = node.session.prepared.at(-1);
    expect(onNode?.args, 'the node session got other arguments than drizzle passed').toEqual(args);
    expect(onNode?.runs).toEqual([[{ id: 1 }, token]]);
    expect(onNode?.token).toBe(token);

    const select = (session.prepareQuery as (...a: unknown[]) => PgPreparedQuery<PreparedQueryConfig>)(
      { sql: 'select 1', params: [] },
      undefined,
      undefined,
      true,
      undefined,
      { type: 'select', tables: [] },
    );
    await select.execute();
    expect(calls).toEqual(['write', 'read']);

    const counted = sql`select count(*) from t`;
    await (session.count as (...a: unknown[]) => Promise<number>)(counted, token);
    await (session.execute as (...a: unknown[]) => Promise<unknown>)(counted, token);
    expect(node.session.counted.at(-1)).toEqual([counted, token]);
    expect(node.session.executed.at(-1)).toEqual([counted, token]);
  });
});

describe('an incompatible drizzle-orm is refused at withReplicas(), loudly and typed', () => {
  // Internal, so not on the class's public type.
  const insert = PgInsertBase.prototype as unknown as { _prepare(this: unknown, name?: string): unknown };
  const original = insert._prepare;
  afterEach(() => {
    insert._prepare = original;
  });

  it('builders that pass no query metadata (as drizzle-orm 0.43 and older): named in the error', () => {
    // drizzle-orm 0.43.1's insert, verbatim in substance: the statement, returning fields, name, array mode.
    insert._prepare = function (this: unknown, name?: string) {
      const self = this as {
        session: PgSession;
        dialect: PgDialect;
        getSQL(): SQL;
        config: { returning?: never };
      };
      return self.session.prepareQuery(self.dialect.sqlToQuery(self.getSQL()), self.config.returning, name, true);
    };
    expect(inspectDrizzle().map((p) => p.internal)).toEqual([
      'insert().prepare() → session.prepareQuery(query metadata)',
    ]);
    let caught: unknown;
    try {
      withReplicas(drizzle.mock(), [drizzle.mock()]);
    } catch (error) {
      caught = error;
    }
    expect(isLaglessError(caught, 'UNSUPPORTED_VERSION')).toBe(true);
    const error = caught as Error & { context: Record<string, unknown> };
    expect(error.message).toContain(`drizzle-orm ${drizzleVersion}`);
    expect(error.message).toContain(`supported: drizzle-orm ${SUPPORTED_DRIZZLE}`);
    expect(error.message).toContain('insert().prepare() → session.prepareQuery(query metadata)');
    expect(error.message).toContain('no such argument');
    expect(error.context).toMatchObject({ drizzleVersion, supported: SUPPORTED_DRIZZLE });
  });

  it('a database whose session is not where drizzle keeps it: the argument and the field are named', () => {
    const replica = drizzle.mock();
    Object.defineProperty(replica, 'session', { value: undefined });
    let caught: unknown;
    try {
      withReplicas(drizzle.mock(), [drizzle.mock(), replica]);
    } catch (error) {
      caught = error;
    }
    expect(isLaglessError(caught, 'UNSUPPORTED_VERSION')).toBe(true);
    expect((caught as Error).message).toMatch(
      /^@lagless\/drizzle cannot route with drizzle-orm \S+ \(replicas\[1\]\) \(supported: .*\); internals that differ: replicas\[1\]\.session: expected a PgSession, found undefined$/,
    );
    expect((caught as { context: unknown }).context).toMatchObject({ option: 'replicas[1]' });
  });
});
