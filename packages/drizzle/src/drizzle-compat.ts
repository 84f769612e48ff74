// Everything this adapter knows about drizzle-orm beyond its public API lives here. drizzle's own
// `withReplicas` needs no internals because it picks a database when a builder is made; we pick the
// node when the statement runs, so we stand in for drizzle's session underneath the builders, and
// that contract (what the builders hand `prepareQuery`, what they set on what it returns) is not
// public. It is checked, by behaviour and never by argument position, each time `withReplicas()` is
// called: a drizzle-orm that changed it is refused with an error naming the internal, instead of
// routing wrongly. test/drizzle-compat.test.ts asserts the same against the installed drizzle-orm.
import { LaglessError, type LaglessErrorCode, showValue } from '@lagless/core';
import { is, type Query, SQL } from 'drizzle-orm';
import {
  integer,
  PgDatabase,
  PgDialect,
  PgPreparedQuery,
  type PgQueryResultHKT,
  PgSession,
  type PreparedQueryConfig,
  pgTable,
} from 'drizzle-orm/pg-core';
import { createTableRelationsHelpers, extractTablesRelationalConfig } from 'drizzle-orm/relations';
import { npmVersion } from 'drizzle-orm/version';

/** The drizzle-orm release installed, as it reports itself. */
export const drizzleVersion: string = npmVersion;

/** The drizzle-orm releases CI runs this adapter against; the package's peer range says the same. */
export const SUPPORTED_DRIZZLE = '>=0.44 <0.46';

// An installed drizzle-orm this adapter cannot drive: the version and the internal are in the
// message and the context.
const INCOMPATIBLE: LaglessErrorCode = 'UNSUPPORTED_VERSION';

/** What drizzle's select, insert, update and delete builders tell `prepareQuery` (drizzle-orm 0.44+). */
export interface QueryMetadata {
  readonly type: string;
  readonly tables: readonly string[];
}

/** The fields of a drizzle pg database (`PgDatabase`) that its public types hide and we build on. */
export interface DrizzleInternals {
  readonly dialect: PgDialect;
  readonly session: PgSession;
  readonly _: {
    readonly schema: Record<string, unknown> | undefined;
    readonly fullSchema: Record<string, unknown>;
    readonly tableNamesMap: Record<string, string>;
  };
}

/** One internal that is not what this adapter was written against. */
export interface Incompatibility {
  /** The internal, e.g. `insert().prepare() → session.prepareQuery(query metadata)`. */
  readonly internal: string;
  readonly expected: string;
  readonly found: string;
}

/**
 * Builders that only read, among those `db.with(...)` returns: they may go to a replica. Anything
 * else it returns (today insert, update, delete) runs on the primary, including builders a later
 * drizzle-orm adds.
 */
export const READING_WITH_BUILDERS: ReadonlySet<string> = new Set(['select', 'selectDistinct', 'selectDistinctOn']);

/**
 * The property drizzle's select builder sets on the prepared query `prepareQuery` returned, and
 * every driver's prepared query reads to map left-joined tables to null: copied onto each node's.
 */
export const JOINS_NULLABILITY = 'joinsNotNullableMap';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The query metadata among `prepareQuery`'s arguments, found by its shape `{ type, tables }`. */
export function queryMetadataOf(args: readonly unknown[]): QueryMetadata | undefined {
  for (const arg of args) {
    if (isRecord(arg) && typeof arg.type === 'string' && Array.isArray(arg.tables)) return arg as never;
  }
  return undefined;
}

/** The rendered statement among `prepareQuery`'s arguments, found by its shape `{ sql, params }`. */
export function queryOf(args: readonly unknown[]): Query | undefined {
  for (const arg of args) {
    if (isRecord(arg) && typeof arg.sql === 'string' && Array.isArray(arg.params)) return arg as never;
  }
  return undefined;
}

/** The SQL a `$with(...).as(...)` CTE keeps (it keeps no builder), or undefined if it has none. */
export function cteSql(cte: unknown): SQL | undefined {
  const sql = isRecord(cte) && isRecord(cte._) ? cte._.sql : undefined;
  return is(sql, SQL) ? sql : undefined;
}

function incompatible(problems: readonly Incompatibility[], option?: string): LaglessError {
  const what = problems.map((p) => `${p.internal}: expected ${p.expected}, found ${p.found}`).join('; ');
  const subject = option === undefined ? '' : ` (${option})`;
  return new LaglessError(
    INCOMPATIBLE,
    `@lagless/drizzle cannot route with drizzle-orm ${drizzleVersion}${subject} (supported: drizzle-orm ${SUPPORTED_DRIZZLE}); internals that differ: ${what}`,
    {
      context: {
        ...(option === undefined ? {} : { option }),
        drizzleVersion,
        supported: SUPPORTED_DRIZZLE,
        internals: problems.map((p) => p.internal),
      },
    },
  );
}

/**
 * The hidden fields of a drizzle pg database, checked: `path` names the argument in the error
 * (`primary`, `replicas[1]`). Routing reads `session` on every statement, so it is checked once here.
 */
export function databaseInternals(db: unknown, path: string): DrizzleInternals {
  const fields = (isRecord(db) ? db : {}) as Partial<Record<keyof DrizzleInternals, unknown>>;
  const problems: Incompatibility[] = [];
  if (!is(fields.dialect, PgDialect)) {
    problems.push({ internal: `${path}.dialect`, expected: 'a PgDialect', found: showValue(fields.dialect) });
  }
  if (!is(fields.session, PgSession)) {
    problems.push({ internal: `${path}.session`, expected: 'a PgSession', found: showValue(fields.session) });
  }
  const meta = fields._;
  if (!isRecord(meta) || !isRecord(meta.fullSchema) || !isRecord(meta.tableNamesMap)) {
    problems.push({
      internal: `${path}._`,
      expected: '{ schema, fullSchema, tableNamesMap } (the relational schema)',
      found: showValue(meta),
    });
  }
  if (problems.length > 0) throw incompatible(problems, path);
  return fields as DrizzleInternals;
}

/** The session of a database `databaseInternals()` accepted: on the hot path, so not checked again. */
export function sessionOf(db: unknown): PgSession {
  return (db as DrizzleInternals).session;
}

// A session that records what drizzle's builders hand it and runs nothing: drizzle's behaviour is
// observed through its own builders, so what we check is what the installed release does.
class RecordedQuery extends PgPreparedQuery<PreparedQueryConfig> {
  readonly args: readonly unknown[];
  [JOINS_NULLABILITY]: unknown;

  constructor(args: readonly unknown[]) {
    super(queryOf(args) as Query, undefined, undefined, undefined);
    this.args = args;
  }

  execute(): Promise<never> {
    return Promise.reject(new Error('lagless: a compatibility probe runs nothing'));
  }
}

class RecordingSession extends PgSession<PgQueryResultHKT, Record<string, unknown>, Record<string, never>> {
  readonly prepared: RecordedQuery[] = [];

  override prepareQuery(...args: Parameters<PgSession['prepareQuery']>): RecordedQuery {
    const prepared = new RecordedQuery(args);
    this.prepared.push(prepared);
    return prepared;
  }

  override transaction<T>(): Promise<T> {
    return Promise.reject(new Error('lagless: a compatibility probe runs nothing'));
  }
}

const NAME = 'lagless_compat_probe';

/** A database over a recording session, as `withReplicas()` builds its own, with a one-table schema. */
function probeDatabase() {
  const table = pgTable(NAME, { id: integer('id') });
  const fullSchema = { [NAME]: table };
  const { tables, tableNamesMap } = extractTablesRelationalConfig(fullSchema, createTableRelationsHelpers);
  const dialect = new PgDialect();
  const session = new RecordingSession(dialect);
  const db = new PgDatabase(dialect, session, { fullSchema, schema: tables, tableNamesMap } as never);
  return { db, table, dialect, session };
}

function describeError(error: unknown): string {
  return `an error (${error instanceof Error ? error.message : String(error)})`;
}

/**
 * Checks every drizzle internal this adapter relies on, with drizzle's own builders over a session
 * that runs nothing (no I/O; about a millisecond). An empty list means the installed
 * drizzle-orm behaves as the releases this adapter supports.
 */
export function inspectDrizzle(): Incompatibility[] {
  const problems: Incompatibility[] = [];
  let probe: ReturnType<typeof probeDatabase>;
  try {
    probe = probeDatabase();
  } catch (error) {
    return [
      { internal: 'new PgDatabase(dialect, session, schema)', expected: 'a database', found: describeError(error) },
    ];
  }
  const { db, table, dialect, session } = probe;
  const fields = db as unknown as Partial<DrizzleInternals>;
  if (fields.session !== session || fields.dialect !== dialect) {
    problems.push({
      internal: 'new PgDatabase(dialect, session, schema)',
      expected: 'a database keeping the session and dialect it was given in .session and .dialect',
      found: 'other values in those fields',
    });
  }

  /** Runs `build().prepare()` and returns what the session was handed, or records why it could not. */
  const prepare = (internal: string, build: () => { prepare(name: string): unknown }) => {
    const before = session.prepared.length;
    let returned: unknown;
    try {
      returned = build().prepare(NAME);
    } catch (error) {
      problems.push({ internal, expected: 'a prepared query', found: describeError(error) });
      return undefined;
    }
    const recorded = session.prepared.slice(before);
    const prepared = recorded[0];
    if (recorded.length !== 1 || prepared === undefined) {
      problems.push({
        internal,
        expected: 'one call of the database session’s prepareQuery()',
        found: `${recorded.length} calls`,
      });
      return undefined;
    }
    if (queryOf(prepared.args) === undefined) {
      problems.push({ internal, expected: 'the statement as a { sql, params } argument', found: 'none' });
    }
    return { prepared, returned };
  };

  const kinds = [
    ['select', () => db.select().from(table)],
    ['insert', () => db.insert(table).values({ id: 1 })],
    ['update', () => db.update(table).set({ id: 1 })],
    ['delete', () => db.delete(table)],
  ] as const;
  for (const [kind, build] of kinds) {
    // Without it a data-modifying statement on a reading session cannot be told apart (drizzle-orm
    // before 0.44 passes none): the guard that keeps writes off replicas would do nothing.
    const internal = `${kind}().prepare() → session.prepareQuery(query metadata)`;
    const seen = prepare(internal, build);
    if (seen === undefined) continue;
    const metadata = queryMetadataOf(seen.prepared.args);
    // Only 'select' may go to a replica. The other kinds need only differ from it (drizzle-orm 0.44
    // and 0.45 label an update 'insert'). A select without metadata is still a read, routed by
    // the session it is built on; one labelled otherwise would never reach a replica.
    const fits =
      kind === 'select'
        ? metadata === undefined || metadata.type === 'select'
        : metadata !== undefined && metadata.type !== 'select';
    if (!fits) {
      problems.push({
        internal,
        expected:
          kind === 'select'
            ? "no metadata, or an argument { type: 'select', tables }"
            : "an argument { type, tables } whose type is not 'select'",
        found: metadata === undefined ? 'no such argument' : `type ${showValue(metadata.type)}`,
      });
    }
    if (kind === 'select') {
      if (seen.returned !== seen.prepared) {
        problems.push({
          internal: 'select().prepare()',
          expected: 'the prepared query prepareQuery() returned',
          found: showValue(seen.returned),
        });
      }
      if (!isRecord(seen.prepared[JOINS_NULLABILITY])) {
        problems.push({
          internal: `select().prepare() → prepared.${JOINS_NULLABILITY}`,
          expected: 'an object set on the prepared query (how drivers map left-joined tables to null)',
          found: showValue(seen.prepared[JOINS_NULLABILITY]),
        });
      }
    }
  }

  // Relational queries are built by the database's `query.*` builders on the session it was given.
  const relational = (db.query as unknown as Record<string, { findMany?: () => { prepare(name: string): unknown } }>)[
    NAME
  ];
  if (typeof relational?.findMany !== 'function') {
    problems.push({
      internal: 'new PgDatabase(dialect, session, schema).query',
      expected: 'relational query builders per table of the schema',
      found: showValue(relational),
    });
  } else {
    prepare('query.<table>.findMany().prepare() → session.prepareQuery()', () =>
      (relational.findMany as () => { prepare(name: string): unknown })(),
    );
  }

  // cte.ts judges a `with(...)` by the SQL its CTEs keep.
  try {
    const sql = cteSql(db.$with(NAME).as(db.select().from(table)));
    const text = sql === undefined ? undefined : dialect.sqlToQuery(sql).sql;
    if (typeof text !== 'string' || !/^select\b/i.test(text)) {
      problems.push({
        internal: '$with(name).as(query)._.sql',
        expected: 'the CTE’s SQL, rendered by dialect.sqlToQuery()',
        found: showValue(text ?? sql),
      });
    }
  } catch (error) {
    problems.push({ internal: '$with(name).as(query)._.sql', expected: 'the CTE’s SQL', found: describeError(error) });
  }

  const withBuilders = db.with() as unknown as Record<string, unknown>;
  const missing = [...READING_WITH_BUILDERS].filter((name) => typeof withBuilders[name] !== 'function');
  if (missing.length > 0) {
    problems.push({
      internal: 'with(...)',
      expected: `an object with ${[...READING_WITH_BUILDERS].join(', ')}`,
      found: `no ${missing.join(', ')}`,
    });
  }
  return problems;
}

/** Throws when the installed drizzle-orm is not one this adapter can route (see `inspectDrizzle()`). */
export function assertSupportedDrizzle(): void {
  const problems = inspectDrizzle();
  if (problems.length > 0) throw incompatible(problems);
}
