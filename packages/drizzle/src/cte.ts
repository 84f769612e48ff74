import type { PgDialect } from 'drizzle-orm/pg-core';
import { cteSql } from './drizzle-compat.js';

// A CTE keeps only its rendered SQL (`$with().as(qb)` calls `qb.getSQL()`), not the builder it came
// from, so the statement text is all there is to judge. Literals and quoted identifiers are blanked
// first so that a column named "update" or a string 'delete from' does not count.
const QUOTED = /'(?:[^']|'')*'|"(?:[^"]|"")*"|\$([A-Za-z_]*)\$[\s\S]*?\$\1\$/g;
// Conservative on purpose: a false positive costs one read on the primary, a false negative sends a
// write to a read-only replica, which is what drizzle's own withReplicas does. A `FOR UPDATE` in a
// CTE matches too, and a standby would refuse that lock anyway.
const WRITES = /\b(?:insert|update|delete|merge)\b/i;

const verdicts = new WeakMap<object, boolean>();

/** True when `cte` (a `$with(...).as(...)` result) inserts, updates, deletes or merges rows. */
export function isDataModifyingCte(cte: unknown, dialect: PgDialect): boolean {
  if (typeof cte !== 'object' || cte === null) return false;
  const known = verdicts.get(cte);
  if (known !== undefined) return known;
  const sql = cteSql(cte);
  // Something we cannot read is treated as a write: correctness over offloading.
  const verdict = sql === undefined ? true : WRITES.test(dialect.sqlToQuery(sql).sql.replace(QUOTED, "''"));
  verdicts.set(cte, verdict);
  return verdict;
}
