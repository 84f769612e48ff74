import { describe, expect, it } from 'vitest';
import {
  compareLsn,
  formatLsn,
  lsnFromPrimaryInsertPosition,
  MAX_LSN,
  maxLsn,
  parseLsn,
  ZERO_LSN,
} from '../src/lsn.js';
import { random64, thrown, uint32s } from './assertions.js';

describe('parseLsn', () => {
  it('parses the extremes', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(2n ** 64n - 1n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(MAX_LSN);
  });

  it('parses the classic form', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16_b374d848n);
    expect(parseLsn('0/306EE20')).toBe(0x306ee20n);
    expect(parseLsn('1/0')).toBe(0x1_0000_0000n);
  });

  it('parses the zero-padded form to the same value as the classic one', () => {
    expect(parseLsn('0/0306EE20')).toBe(parseLsn('0/306EE20'));
    expect(parseLsn('00000016/B374D848')).toBe(parseLsn('16/B374D848'));
    expect(parseLsn('00000000/00000000')).toBe(0n);
    expect(parseLsn('00000001/00000000')).toBe(parseLsn('1/0'));
  });

  it('is case-insensitive', () => {
    expect(parseLsn('16/b374d848')).toBe(parseLsn('16/B374D848'));
    expect(parseLsn('ffffffff/ffffffff')).toBe(MAX_LSN);
    expect(parseLsn('aB/cD')).toBe(0xab_0000_00cdn);
  });

  it.each([
    ['empty', ''],
    ['a lone slash', '/'],
    ['a missing low half', '1/'],
    ['a missing high half', '/1'],
    ['extra slashes', '1/2/3'],
    ['no slash', '16B374D848'],
    ['a non-hex digit', 'G/0'],
    ['more than 8 digits in the high half', '123456789/0'],
    ['more than 8 digits in the low half', '0/123456789'],
    ['leading whitespace', ' 1/0'],
    ['trailing whitespace', '1/0 '],
    ['a trailing newline', '1/0\n'],
    ['whitespace around the slash', '1 / 0'],
    ['a minus sign', '-1/0'],
    ['a plus sign', '+1/0'],
    ['a 0x prefix', '0x1/0'],
    ['a 0x prefix on the low half', '1/0x0'],
    ['a decimal number', '12345'],
  ])('rejects %s', (_label, text) => {
    const error = thrown(() => parseLsn(text), 'INVALID_LSN');
    expect(error.message).toContain(JSON.stringify(text));
  });

  it.each([
    ['a number', 1],
    ['null', null],
    ['undefined', undefined],
    ['a bigint', 1n],
    ['an object', { toString: () => '1/0' }],
  ])('rejects %s', (_label, value) => {
    thrown(() => parseLsn(value as unknown as string), 'INVALID_LSN');
  });

  it('quotes at most 100 characters of what it received', () => {
    const text = `1/0${'A'.repeat(200)}`;
    const error = thrown(() => parseLsn(text), 'INVALID_LSN');
    expect(error.message).toContain(`${JSON.stringify(text.slice(0, 97))}... (203 chars)`);
    expect(error.message).not.toContain(text.slice(0, 98));
  });
});

describe('formatLsn', () => {
  it('prints the classic form: uppercase, unpadded', () => {
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(0x16_b374d848n)).toBe('16/B374D848');
    expect(formatLsn(0x306ee20n)).toBe('0/306EE20');
    expect(formatLsn(0x1_0000_0000n)).toBe('1/0');
    expect(formatLsn(MAX_LSN)).toBe('FFFFFFFF/FFFFFFFF');
  });

  it.each([
    ['-1n', -1n],
    ['2^64', 2n ** 64n],
    ['a huge value', 2n ** 200n],
  ])('rejects %s', (_label, value) => {
    thrown(() => formatLsn(value), 'INVALID_LSN');
  });

  it('rejects non-bigints', () => {
    thrown(() => formatLsn(1 as unknown as bigint), 'INVALID_LSN');
    thrown(() => formatLsn('0/0' as unknown as bigint), 'INVALID_LSN');
  });

  it('round-trips random 64-bit values exactly', () => {
    const next = uint32s(0x1a61e55);
    for (let i = 0; i < 2000; i++) {
      const lsn = random64(next);
      expect(parseLsn(formatLsn(lsn))).toBe(lsn);
    }
  });

  it('round-trips text in the classic form', () => {
    for (const text of ['0/0', '16/B374D848', '0/306EE20', 'FFFFFFFF/FFFFFFFF', '1/1']) {
      expect(formatLsn(parseLsn(text))).toBe(text);
    }
  });
});

describe('constants', () => {
  it('span the whole pg_lsn range', () => {
    expect(ZERO_LSN).toBe(0n);
    expect(MAX_LSN).toBe(2n ** 64n - 1n);
  });
});

describe('compareLsn and maxLsn', () => {
  it('orders where string comparison would not', () => {
    // '9/0' > '10/0' as strings.
    expect(compareLsn(parseLsn('9/0'), parseLsn('10/0'))).toBe(-1);
    expect(compareLsn(parseLsn('0/FFFFFFFF'), parseLsn('1/0'))).toBe(-1);
    expect(compareLsn(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(1);
    expect(compareLsn(parseLsn('0/A'), parseLsn('0/9'))).toBe(1);
    expect(compareLsn(parseLsn('00000016/B374D848'), parseLsn('16/B374D848'))).toBe(0);
  });

  it('orders values that floats cannot tell apart', () => {
    const a = 2n ** 60n;
    const b = a + 1n;
    expect(Number(a)).toBe(Number(b));
    expect(compareLsn(a, b)).toBe(-1);
    expect(compareLsn(b, a)).toBe(1);
    expect(compareLsn(parseLsn(formatLsn(b)), parseLsn(formatLsn(a)))).toBe(1);
    expect(maxLsn(a, b)).toBe(b);
    expect(maxLsn(b, a)).toBe(b);
    expect(compareLsn(parseLsn('10000000/1'), parseLsn('10000000/0'))).toBe(1);
    expect(compareLsn(MAX_LSN - 1n, MAX_LSN)).toBe(-1);
  });

  it('agrees with bigint ordering on random values', () => {
    const next = uint32s(42);
    for (let i = 0; i < 500; i++) {
      const a = random64(next);
      const b = random64(next);
      const expected = a < b ? -1 : a > b ? 1 : 0;
      expect(compareLsn(a, b)).toBe(expected);
      expect(compareLsn(b, a)).toBe(-expected || 0);
      expect(compareLsn(a, a)).toBe(0);
      expect(maxLsn(a, b)).toBe(a > b ? a : b);
    }
  });

  it('returns either value when they are equal', () => {
    expect(maxLsn(ZERO_LSN, 0n)).toBe(0n);
    expect(maxLsn(MAX_LSN, MAX_LSN)).toBe(MAX_LSN);
  });
});

describe('lsnFromPrimaryInsertPosition', () => {
  const page = 8192n;
  const base = 0x16_0000_0000n + 5n * page;

  it('lowers a position just past a short page header to the page start', () => {
    expect(lsnFromPrimaryInsertPosition(base + 24n)).toBe(base);
  });

  it('lowers a position just past a long (segment start) page header to the page start', () => {
    const segmentStart = 0x16_0000_0000n + 16n * 1024n * 1024n;
    expect(lsnFromPrimaryInsertPosition(segmentStart + 40n)).toBe(segmentStart);
    expect(lsnFromPrimaryInsertPosition(base + 40n)).toBe(base);
  });

  it.each([0n, 1n, 23n, 25n, 32n, 39n, 41n, 48n, 8191n])('keeps a position at page offset %s', (offset) => {
    expect(lsnFromPrimaryInsertPosition(base + offset)).toBe(base + offset);
  });

  it('handles the very first page and the very last', () => {
    expect(lsnFromPrimaryInsertPosition(24n)).toBe(0n);
    expect(lsnFromPrimaryInsertPosition(40n)).toBe(0n);
    expect(lsnFromPrimaryInsertPosition(0n)).toBe(0n);
    expect(lsnFromPrimaryInsertPosition(MAX_LSN)).toBe(MAX_LSN);
    expect(lsnFromPrimaryInsertPosition(MAX_LSN - 8191n + 24n)).toBe(MAX_LSN - 8191n);
  });

  it('uses the given WAL block size', () => {
    const small = 0x16_0000_0000n + 3n * 1024n;
    expect(lsnFromPrimaryInsertPosition(small + 24n, 1024)).toBe(small);
    expect(lsnFromPrimaryInsertPosition(small + 40n, 1024)).toBe(small);
    expect(lsnFromPrimaryInsertPosition(small + 1024n + 24n, 1024)).toBe(small + 1024n);
    // Offset 1024 + 24 within an 8 kB page is an ordinary record end.
    expect(lsnFromPrimaryInsertPosition(base + 1024n + 24n)).toBe(base + 1024n + 24n);

    const large = 0x16_0000_0000n + 65536n;
    expect(lsnFromPrimaryInsertPosition(large + 24n, 65536)).toBe(large);
    expect(lsnFromPrimaryInsertPosition(large + 8192n + 24n, 65536)).toBe(large + 8192n + 24n);
  });

  it.each([0, 512, 1000, 3000, 8192.5, 131072, -8192, Number.NaN, Number.POSITIVE_INFINITY])(
    'rejects a WAL block size of %s',
    (size) => {
      const error = thrown(() => lsnFromPrimaryInsertPosition(base, size), 'INVALID_OPTION');
      expect(error.message).toContain('walBlockSize');
    },
  );

  it('rejects a non-numeric WAL block size', () => {
    thrown(() => lsnFromPrimaryInsertPosition(base, '8192' as unknown as number), 'INVALID_OPTION');
  });

  it('rejects positions outside the pg_lsn range', () => {
    thrown(() => lsnFromPrimaryInsertPosition(-1n), 'INVALID_LSN');
    thrown(() => lsnFromPrimaryInsertPosition(MAX_LSN + 1n), 'INVALID_LSN');
  });
});
