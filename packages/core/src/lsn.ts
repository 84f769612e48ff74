import { LaglessError, showValue } from './errors.js';

/** The highest position a `pg_lsn` can hold: 2^64 - 1 (`FFFFFFFF/FFFFFFFF`). */
export const MAX_LSN: bigint = 0xffff_ffff_ffff_ffffn;

/** The lowest position a `pg_lsn` can hold (`0/0`). */
export const ZERO_LSN: bigint = 0n;

// Up to 8 hex digits per half: the classic form (`16/B374D848`) and the zero-padded one
// PostgreSQL 19 prints (`00000016/B374D848`). Without the `m` flag, `$` only matches at the very
// end, so a trailing newline is rejected too.
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

// 24 and 40 are SizeOfXLogShortPHD and SizeOfXLogLongPHD in PostgreSQL's xlog_internal.h.
const SHORT_PAGE_HEADER = 24n;
const LONG_PAGE_HEADER = 40n;
const DEFAULT_WAL_BLOCK_SIZE = 8192;
const DEFAULT_PAGE_MASK = BigInt(DEFAULT_WAL_BLOCK_SIZE - 1);

/**
 * Parses PostgreSQL `pg_lsn` text into an exact 64-bit position.
 *
 * Accepts `X/Y` with 1 to 8 hex digits on each side, in either case: the classic form
 * (`16/B374D848`, `0/0`) and the zero-padded form (`00000016/B374D848`).
 *
 * @throws {LaglessError} `INVALID_LSN` for anything else (empty, whitespace, signs, `0x`,
 *   more than 8 digits per half, a missing or extra `/`, non-strings).
 */
export function parseLsn(text: string): bigint {
  const match = typeof text === 'string' ? LSN_TEXT.exec(text) : null;
  if (match === null) {
    throw new LaglessError(
      'INVALID_LSN',
      `Invalid pg_lsn: expected text like "16/B374D848", received ${showValue(text)}`,
    );
  }
  // Each half is at most 2^32 - 1, well inside a double's exact integer range, so parseInt is
  // exact here and avoids building a bigint from a string.
  const high = Number.parseInt(match[1] as string, 16);
  const low = Number.parseInt(match[2] as string, 16);
  return (BigInt(high) << 32n) | BigInt(low);
}

/**
 * Formats a position the way PostgreSQL has classically printed `pg_lsn`: uppercase hex,
 * no zero padding (`16/B374D848`, `0/0`). The result is accepted by `parseLsn` and by
 * PostgreSQL's `pg_lsn` input.
 *
 * @throws {LaglessError} `INVALID_LSN` when `lsn` is not a bigint in `0..MAX_LSN`.
 */
export function formatLsn(lsn: bigint): string {
  assertLsn(lsn);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** Orders two positions exactly: -1 when `a` is behind `b`, 1 when ahead, 0 when equal. */
export function compareLsn(a: bigint, b: bigint): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The more advanced of two positions. */
export function maxLsn(a: bigint, b: bigint): bigint {
  return a >= b ? a : b;
}

/**
 * Turns the primary's `pg_current_wal_insert_lsn()` into a position a standby can be waited on
 * for.
 *
 * When the last WAL record ended exactly on a WAL page boundary, the primary's insert position
 * is reported *after* the next page's header: boundary + 24 (short header) or boundary + 40
 * (long header, first page of a segment). A standby's `pg_last_wal_replay_lsn()` is the end of
 * the last record it replayed, so it stays at the boundary itself, and a read waiting for the
 * reported position would wait forever on an idle primary.
 *
 * Lowering such a position to its page start loses nothing, because replay positions are record
 * ends and none lies between the page start and an insert position at offset 24 or 40. No record
 * can end inside a page header: one that starts on the page ends at least 24 bytes (its own
 * header) after it. So either the last record ended at the boundary (the case above), or, at
 * offset 40 of a page with a short header, the last record is the 16-byte tail of one continued
 * from the previous page; that record began before the page start, so a standby whose position
 * has reached the page start has replayed it. Any other position is returned unchanged.
 *
 * @param lsn the primary's WAL insert position.
 * @param walBlockSize the cluster's `wal_block_size` (`SHOW wal_block_size`); a power of two from
 *   1024 to 65536. @default 8192
 * @throws {LaglessError} `INVALID_LSN` when `lsn` is not a bigint in `0..MAX_LSN`;
 *   `INVALID_OPTION` for a bad `walBlockSize`.
 */
export function lsnFromPrimaryInsertPosition(lsn: bigint, walBlockSize: number = DEFAULT_WAL_BLOCK_SIZE): bigint {
  assertLsn(lsn);
  let mask = DEFAULT_PAGE_MASK;
  if (walBlockSize !== DEFAULT_WAL_BLOCK_SIZE) {
    if (
      typeof walBlockSize !== 'number' ||
      !Number.isInteger(walBlockSize) ||
      walBlockSize < 1024 ||
      walBlockSize > 65536 ||
      (walBlockSize & (walBlockSize - 1)) !== 0
    ) {
      throw new LaglessError(
        'INVALID_OPTION',
        `Invalid option walBlockSize: expected a power of two from 1024 to 65536, received ${showValue(walBlockSize)}`,
      );
    }
    mask = BigInt(walBlockSize - 1);
  }
  const offset = lsn & mask;
  return offset === SHORT_PAGE_HEADER || offset === LONG_PAGE_HEADER ? lsn - offset : lsn;
}

function assertLsn(lsn: unknown): asserts lsn is bigint {
  if (typeof lsn !== 'bigint' || lsn < 0n || lsn > MAX_LSN) {
    throw new LaglessError(
      'INVALID_LSN',
      `Invalid LSN: expected a bigint from 0 to 2^64-1, received ${showValue(lsn)}`,
    );
  }
}
