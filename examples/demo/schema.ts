// The demo's tables, for Prisma (prisma/schema.prisma, generated client) and Drizzle (below).
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';

/** Applied on the primary with SQL: prisma migrate needs an engine the demo cannot download. */
export const DDL = [
  'CREATE TABLE "Item" (id serial PRIMARY KEY, owner text NOT NULL, body text NOT NULL)',
  // inet_server_port() is evaluated by the server that runs the read: every row names its node.
  'CREATE VIEW item_seen AS SELECT id, owner, body, inet_server_port() AS port FROM "Item"',
];

export const items = pgTable('Item', {
  id: serial('id').primaryKey(),
  owner: text('owner').notNull(),
  body: text('body').notNull(),
});

/** The view, declared as a table: drizzle only ever selects from it. */
export const itemSeen = pgTable('item_seen', {
  id: integer('id').primaryKey(),
  owner: text('owner').notNull(),
  body: text('body').notNull(),
  port: integer('port').notNull(),
});
