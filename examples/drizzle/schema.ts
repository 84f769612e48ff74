// The example's schema: users and their posts, with relations for drizzle's relational queries.
import { relations } from 'drizzle-orm';
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';

export const users = pgTable('users', {
  id: serial('id').primaryKey(),
  name: text('name').notNull(),
});

export const posts = pgTable('posts', {
  id: serial('id').primaryKey(),
  authorId: integer('author_id').notNull(),
  title: text('title').notNull(),
});

export const usersRelations = relations(users, ({ many }) => ({ posts: many(posts) }));
export const postsRelations = relations(posts, ({ one }) => ({
  author: one(users, { fields: [posts.authorId], references: [users.id] }),
}));

export const schema = { users, posts, usersRelations, postsRelations };

export const migration = [
  'CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)',
  'CREATE TABLE posts (id serial PRIMARY KEY, author_id int NOT NULL REFERENCES users, title text NOT NULL)',
];
