// Which CTEs make a with(...) statement a write. Pure: rendered by drizzle's dialect, no database.
import { sql, WithSubquery } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { PgDialect, QueryBuilder } from 'drizzle-orm/pg-core';
import { describe, expect, it } from 'vitest';
import { isDataModifyingCte } from '../src/cte.js';
import { items } from './schema.js';

const dialect = new PgDialect();
// A database object is only needed to build insert/update/delete CTEs; it never connects.
const db = drizzle.mock();
const qb = new QueryBuilder();

describe('isDataModifyingCte', () => {
  it('insert, update and delete CTEs write', () => {
    const ctes = [
      db.$with('a').as(db.insert(items).values({ note: 'x' }).returning()),
      db.$with('b').as(db.update(items).set({ note: 'y' }).returning()),
      db.$with('c').as(db.delete(items).returning()),
      // drizzle has no merge builder; a hand-written CTE is how one would arrive.
      new WithSubquery(
        sql`merge into items using (select 1) s on false when not matched then do nothing`,
        {},
        'd',
        true,
      ),
    ];
    expect(ctes.map((cte) => isDataModifyingCte(cte, dialect))).toEqual([true, true, true, true]);
  });

  it('select CTEs read, also when a quoted name or a literal spells a write keyword', () => {
    const ctes = [
      qb.$with('a').as(qb.select().from(items)),
      qb.$with('b').as(qb.select({ n: sql<string>`'delete from items'`.as('n') }).from(items)),
      qb.$with('c').as(qb.select({ update: sql<number>`1`.as('update') }).from(items)),
      qb.$with('d').as(qb.select({ n: sql<string>`$q$insert into$q$`.as('n') }).from(items)),
    ];
    expect(ctes.map((cte) => isDataModifyingCte(cte, dialect))).toEqual([false, false, false, false]);
  });

  it('treats a CTE it cannot read, and a locking one, as a write', () => {
    expect(isDataModifyingCte({}, dialect)).toBe(true);
    expect(isDataModifyingCte(qb.$with('l').as(qb.select().from(items).for('update')), dialect)).toBe(true);
  });
});
