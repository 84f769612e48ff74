/** Model operations that only read: they go to a replica. */
export const READ_OPERATIONS: ReadonlySet<string> = new Set([
  'findUnique',
  'findUniqueOrThrow',
  'findFirst',
  'findFirstOrThrow',
  'findMany',
  'count',
  'aggregate',
  'groupBy',
]);

/**
 * Prisma merges concurrent calls of these into one SQL statement (its dataloader), so the statement
 * that serves one of them may carry another caller's async context, or none.
 */
export const BATCHED_OPERATIONS: ReadonlySet<string> = new Set(['findUnique', 'findUniqueOrThrow']);

/** Raw operations; their SQL is opaque to us. */
export const RAW_OPERATIONS: ReadonlySet<string> = new Set([
  '$queryRaw',
  '$queryRawUnsafe',
  '$executeRaw',
  '$executeRawUnsafe',
  '$queryRawTyped',
]);

const PLAIN_SELECT = /^\s*(\/\*[\s\S]*?\*\/\s*)*(select|with)\b/i;
const LOCKING_OR_WRITING = /\bfor\s+(update|no\s+key\s+update|share|key\s+share)\b|\b(insert|update|delete|merge)\b/i;

/**
 * True for a statement that can only read. Used for statements that arrive without any routing
 * context (see `adapter.ts`), where being wrong would send a write to a replica: anything unusual
 * counts as a write.
 */
export function isReadOnlySql(sql: string): boolean {
  return PLAIN_SELECT.test(sql) && !LOCKING_OR_WRITING.test(sql);
}
