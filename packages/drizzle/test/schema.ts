// The schema the drizzle adapter's tests run against.
import { relations, sql } from 'drizzle-orm';
import { integer, pgMaterializedView, pgTable, serial, text } from 'drizzle-orm/pg-core';

/** One row, on every node: a fixed thing to select from when only the serving server matters. */
export const probe = pgTable('probe', { id: integer('id').primaryKey() });

export const items = pgTable('items', {
  id: serial('id').primaryKey(),
  note: text('note').notNull(),
});

export const tags = pgTable('tags', {
  id: serial('id').primaryKey(),
  itemId: integer('item_id').notNull(),
  label: text('label').notNull(),
});

export const itemsRelations = relations(items, ({ many }) => ({ tags: many(tags) }));
export const tagsRelations = relations(tags, ({ one }) => ({
  item: one(items, { fields: [tags.itemId], references: [items.id] }),
}));

export const itemCount = pgMaterializedView('item_count', { n: integer('n') }).as(
  sql`select count(*)::int as n from items`,
);

export const schema = { probe, items, tags, itemsRelations, tagsRelations };

export const DDL = [
  'CREATE TABLE probe (id int PRIMARY KEY)',
  'INSERT INTO probe VALUES (1)',
  'CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)',
  'CREATE TABLE tags (id serial PRIMARY KEY, item_id int NOT NULL, label text NOT NULL)',
  'CREATE MATERIALIZED VIEW item_count AS SELECT count(*)::int AS n FROM items',
];
