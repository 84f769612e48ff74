// The one table both apps use: prisma/schema.prisma's `Note` model, and the same table for Drizzle.
// Created with SQL: prisma migrate needs an engine this repository never downloads.
import { pgTable, serial, text } from 'drizzle-orm/pg-core';

export const notes = pgTable('Note', {
  id: serial('id').primaryKey(),
  owner: text('owner').notNull(),
  body: text('body').notNull(),
});

export const SCHEMA_SQL = ['CREATE TABLE "Note" (id serial PRIMARY KEY, owner text NOT NULL, body text NOT NULL)'];
