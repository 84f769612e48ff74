import { describe, expect, it } from 'vitest';
import { MAX_LSN } from '../src/lsn.js';
import {
  type DecodeTokenOptions,
  decodeToken,
  encodeToken,
  type TokenPayload,
  type TokenRejectionReason,
  validateSecret,
} from '../src/token.js';
import { random64, thrown, uint32s } from './assertions.js';

const SYSTEM_ID = '7312345678901234567';
const OTHER_SYSTEM_ID = '7398765432109876543';
const SECRET = 'correct-horse-battery-staple';
const OTHER_SECRET = 'another-secret-of-enough-bytes';
const PAYLOAD: TokenPayload = { lsn: 0x16_b374d848n, systemIdentifier: SYSTEM_ID };
const COOKIE_SAFE = /^[A-Za-z0-9._-]+$/;

function rejection(token: unknown, options: DecodeTokenOptions): TokenRejectionReason {
  const error = thrown(() => decodeToken(token, options), 'INVALID_TOKEN');
  return error.context.reason as TokenRejectionReason;
}

/** Replaces the character at `index` with a different one from the same alphabet. */
function flip(token: string, index: number): string {
  const char = token[index];
  const replacement = char === 'A' ? 'B' : 'A';
  return `${token.slice(0, index)}${replacement}${token.slice(index + 1)}`;
}

describe('encodeToken', () => {
  it('writes the documented unsigned format', () => {
    expect(encodeToken(PAYLOAD)).toBe(`l1.00000016B374D848.${SYSTEM_ID}`);
    expect(encodeToken({ lsn: 0n, systemIdentifier: '0' })).toBe('l1.0000000000000000.0');
    expect(encodeToken({ lsn: MAX_LSN, systemIdentifier: '18446744073709551615' })).toBe(
      'l1.FFFFFFFFFFFFFFFF.18446744073709551615',
    );
  });

  it('appends a base64url HMAC-SHA256 without padding when signed', () => {
    const token = encodeToken(PAYLOAD, SECRET);
    expect(token.startsWith(`l1.00000016B374D848.${SYSTEM_ID}.`)).toBe(true);
    const signature = token.split('.')[3] ?? '';
    expect(signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(encodeToken(PAYLOAD, SECRET)).toBe(token);
    expect(encodeToken(PAYLOAD, OTHER_SECRET)).not.toBe(token);
  });

  it('signs the same with a string secret and its UTF-8 bytes', () => {
    const secret = 'ünïcödé-secret-😀';
    expect(encodeToken(PAYLOAD, new TextEncoder().encode(secret))).toBe(encodeToken(PAYLOAD, secret));
  });

  it('only ever uses header- and cookie-safe characters', () => {
    const next = uint32s(7);
    for (let i = 0; i < 500; i++) {
      const payload = { lsn: random64(next), systemIdentifier: random64(next).toString() };
      const secret = `secret-${next().toString(36)}-padding-bytes`;
      expect(encodeToken(payload)).toMatch(COOKIE_SAFE);
      expect(encodeToken(payload, secret)).toMatch(COOKIE_SAFE);
    }
  });

  it.each([
    ['-1n', -1n],
    ['2^64', 2n ** 64n],
  ])('rejects an LSN of %s', (_label, lsn) => {
    thrown(() => encodeToken({ lsn, systemIdentifier: SYSTEM_ID }), 'INVALID_LSN');
  });

  it('rejects a non-bigint LSN', () => {
    thrown(() => encodeToken({ lsn: 5 as unknown as bigint, systemIdentifier: SYSTEM_ID }), 'INVALID_LSN');
  });

  it.each([
    ['empty', ''],
    ['a leading zero', '07312345678901234567'],
    ['a sign', '-1'],
    ['a non-digit', '12a4'],
    ['21 digits', '123456789012345678901'],
    ['a value above 2^64-1', '18446744073709551616'],
    ['a dot', '1.5'],
  ])('rejects a system identifier with %s', (_label, systemIdentifier) => {
    const error = thrown(() => encodeToken({ lsn: 1n, systemIdentifier }), 'INVALID_OPTION');
    expect(error.message).toContain('systemIdentifier');
  });

  it('rejects a non-string system identifier', () => {
    const systemIdentifier = 7312345678901234 as unknown as string;
    thrown(() => encodeToken({ lsn: 1n, systemIdentifier }), 'INVALID_OPTION');
  });

  it('rejects a secret that is too short', () => {
    thrown(() => encodeToken(PAYLOAD, 'short'), 'INVALID_OPTION');
  });
});

describe('decodeToken', () => {
  it('round-trips unsigned tokens', () => {
    expect(decodeToken(encodeToken(PAYLOAD), { systemIdentifier: SYSTEM_ID })).toEqual(PAYLOAD);
  });

  it('round-trips signed tokens', () => {
    const token = encodeToken(PAYLOAD, SECRET);
    expect(decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: SECRET })).toEqual(PAYLOAD);
    expect(decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: new TextEncoder().encode(SECRET) })).toEqual(
      PAYLOAD,
    );
  });

  it('round-trips random payloads exactly', () => {
    const next = uint32s(0xc0ffee);
    for (let i = 0; i < 300; i++) {
      const payload = { lsn: random64(next), systemIdentifier: random64(next).toString() };
      const options = { systemIdentifier: payload.systemIdentifier };
      expect(decodeToken(encodeToken(payload), options)).toEqual(payload);
      expect(decodeToken(encodeToken(payload, SECRET), { ...options, secret: SECRET })).toEqual(payload);
    }
  });

  it('round-trips the extremes', () => {
    for (const payload of [
      { lsn: 0n, systemIdentifier: '0' },
      { lsn: MAX_LSN, systemIdentifier: '18446744073709551615' },
    ]) {
      const options = { systemIdentifier: payload.systemIdentifier, secret: SECRET };
      expect(decodeToken(encodeToken(payload, SECRET), options)).toEqual(payload);
    }
  });

  describe('malformed', () => {
    const options = { systemIdentifier: SYSTEM_ID };
    const valid = encodeToken(PAYLOAD);

    it.each([
      ['a number', 42],
      ['null', null],
      ['undefined', undefined],
      ['an object', { token: valid }],
      ['a Buffer', Buffer.from(valid)],
    ])('rejects %s', (_label, token) => {
      expect(rejection(token, options)).toBe('malformed');
    });

    it.each([
      ['an empty string', ''],
      ['garbage', 'not-a-token'],
      ['the version alone', 'l1'],
      ['a missing system identifier', 'l1.00000016B374D848'],
      ['an empty system identifier', 'l1.00000016B374D848.'],
      ['a short LSN', `l1.16B374D848.${SYSTEM_ID}`],
      ['a long LSN', `l1.000000016B374D848.${SYSTEM_ID}`],
      ['a lowercase LSN', `l1.00000016b374d848.${SYSTEM_ID}`],
      ['an LSN with a slash', `l1.16/B374D848.${SYSTEM_ID}`],
      ['a system identifier with a leading zero', `l1.00000016B374D848.0${SYSTEM_ID}`],
      ['a system identifier above 2^64-1', 'l1.00000016B374D848.18446744073709551616'],
      ['a 21-digit system identifier', 'l1.00000016B374D848.123456789012345678901'],
      ['an empty signature', `l1.00000016B374D848.${SYSTEM_ID}.`],
      ['an extra part', `${encodeToken(PAYLOAD, SECRET)}.extra`],
      ['whitespace', ` ${valid}`],
      ['a trailing newline', `${valid}\n`],
      ['characters outside the token alphabet', `${valid};`],
      ['padding in the signature', `${encodeToken(PAYLOAD, SECRET)}=`],
      ['an uppercase version', valid.replace('l1', 'L1')],
    ])('rejects %s', (_label, token) => {
      expect(rejection(token, options)).toBe('malformed');
    });

    it('rejects tokens over 256 characters', () => {
      const long = `${encodeToken(PAYLOAD, SECRET)}${'A'.repeat(256)}`;
      expect(rejection(long, options)).toBe('malformed');
      expect(rejection(`l1.${'0'.repeat(254)}`, options)).toBe('malformed');
    });

    it('echoes at most the first 24 characters', () => {
      const token = `l1.00000016B374D848.${SYSTEM_ID}.${'x'.repeat(200)}`;
      const error = thrown(() => decodeToken(`${token}!`, options), 'INVALID_TOKEN');
      expect(error.message).toContain(token.slice(0, 24));
      expect(error.message).not.toContain(token.slice(0, 25));
    });
  });

  it('rejects other versions as unsupported-version', () => {
    const options = { systemIdentifier: SYSTEM_ID };
    expect(rejection(`l2.00000016B374D848.${SYSTEM_ID}`, options)).toBe('unsupported-version');
    expect(rejection('l2.some-future-shape', options)).toBe('unsupported-version');
    expect(rejection('l10', options)).toBe('unsupported-version');
  });

  it('rejects a token from another cluster as foreign-cluster', () => {
    const token = encodeToken({ lsn: PAYLOAD.lsn, systemIdentifier: OTHER_SYSTEM_ID });
    const error = thrown(() => decodeToken(token, { systemIdentifier: SYSTEM_ID }), 'INVALID_TOKEN');
    expect(error.context).toMatchObject({
      reason: 'foreign-cluster',
      tokenSystemIdentifier: OTHER_SYSTEM_ID,
      systemIdentifier: SYSTEM_ID,
    });

    const signed = encodeToken({ lsn: PAYLOAD.lsn, systemIdentifier: OTHER_SYSTEM_ID }, SECRET);
    expect(rejection(signed, { systemIdentifier: SYSTEM_ID, secret: SECRET })).toBe('foreign-cluster');
  });

  it('rejects an unsigned token as unsigned when a secret is configured', () => {
    expect(rejection(encodeToken(PAYLOAD), { systemIdentifier: SYSTEM_ID, secret: SECRET })).toBe('unsigned');
  });

  it('rejects a signed token as signed-without-secret when no secret is configured', () => {
    const token = encodeToken(PAYLOAD, SECRET);
    expect(rejection(token, { systemIdentifier: SYSTEM_ID })).toBe('signed-without-secret');
    expect(rejection(token, { systemIdentifier: SYSTEM_ID, secret: undefined })).toBe('signed-without-secret');
  });

  describe('bad-signature', () => {
    const options = { systemIdentifier: SYSTEM_ID, secret: SECRET };
    const token = encodeToken(PAYLOAD, SECRET);

    it('rejects a token signed with another secret', () => {
      expect(rejection(encodeToken(PAYLOAD, OTHER_SECRET), options)).toBe('bad-signature');
    });

    it('rejects a tampered LSN', () => {
      const forged = token.replace('00000016B374D848', '00000016B374D849');
      expect(forged).not.toBe(token);
      expect(rejection(forged, options)).toBe('bad-signature');
    });

    it('rejects a tampered system identifier before looking at it', () => {
      const signed = encodeToken(PAYLOAD, SECRET);
      const forged = signed.replace(SYSTEM_ID, OTHER_SYSTEM_ID);
      expect(rejection(forged, options)).toBe('bad-signature');
    });

    it('rejects a changed character anywhere in the signature', () => {
      const start = token.lastIndexOf('.') + 1;
      for (let index = start; index < token.length; index++) {
        expect(rejection(flip(token, index), options)).toBe('bad-signature');
      }
    });

    it('rejects a truncated or extended signature', () => {
      expect(rejection(token.slice(0, -1), options)).toBe('bad-signature');
      expect(rejection(`${token}A`, options)).toBe('bad-signature');
      expect(rejection(`${token.slice(0, token.lastIndexOf('.'))}.A`, options)).toBe('bad-signature');
    });

    it('rejects a signature moved onto another token', () => {
      const other = encodeToken({ lsn: PAYLOAD.lsn + 1n, systemIdentifier: SYSTEM_ID }, SECRET);
      const signature = token.slice(token.lastIndexOf('.'));
      const spliced = `${other.slice(0, other.lastIndexOf('.'))}${signature}`;
      expect(rejection(spliced, options)).toBe('bad-signature');
    });
  });

  describe('ahead-of-primary', () => {
    const token = encodeToken(PAYLOAD);

    it('rejects a token ahead of the given primary LSN', () => {
      const error = thrown(
        () => decodeToken(token, { systemIdentifier: SYSTEM_ID, primaryLsn: PAYLOAD.lsn - 1n }),
        'INVALID_TOKEN',
      );
      expect(error.context).toMatchObject({
        reason: 'ahead-of-primary',
        tokenLsn: '16/B374D848',
        primaryLsn: '16/B374D847',
      });
    });

    it('accepts a token at or behind the primary LSN', () => {
      expect(decodeToken(token, { systemIdentifier: SYSTEM_ID, primaryLsn: PAYLOAD.lsn })).toEqual(PAYLOAD);
      expect(decodeToken(token, { systemIdentifier: SYSTEM_ID, primaryLsn: MAX_LSN })).toEqual(PAYLOAD);
    });

    it('is not checked without a primary LSN', () => {
      const far = encodeToken({ lsn: MAX_LSN, systemIdentifier: SYSTEM_ID });
      expect(decodeToken(far, { systemIdentifier: SYSTEM_ID })).toEqual({ lsn: MAX_LSN, systemIdentifier: SYSTEM_ID });
      expect(decodeToken(far, { systemIdentifier: SYSTEM_ID, primaryLsn: undefined }).lsn).toBe(MAX_LSN);
    });

    it('compares exactly above 2^53', () => {
      const high = 2n ** 60n + 1n;
      const ahead = encodeToken({ lsn: high, systemIdentifier: SYSTEM_ID });
      expect(rejection(ahead, { systemIdentifier: SYSTEM_ID, primaryLsn: high - 1n })).toBe('ahead-of-primary');
    });
  });

  it('never puts the secret in a message', () => {
    const tokens: unknown[] = [
      encodeToken(PAYLOAD),
      encodeToken(PAYLOAD, OTHER_SECRET),
      encodeToken({ lsn: 1n, systemIdentifier: OTHER_SYSTEM_ID }, SECRET),
      encodeToken({ lsn: MAX_LSN, systemIdentifier: SYSTEM_ID }, SECRET),
      'l2.x',
      'garbage',
      null,
    ];
    for (const token of tokens) {
      const error = thrown(
        () => decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: SECRET, primaryLsn: 1n }),
        'INVALID_TOKEN',
      );
      expect(error.message).not.toContain(SECRET);
      expect(JSON.stringify(error.context)).not.toContain(SECRET);
    }
  });

  it('never echoes a whole token', () => {
    const token = encodeToken(PAYLOAD, OTHER_SECRET);
    const error = thrown(() => decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: SECRET }), 'INVALID_TOKEN');
    expect(error.message).toContain(token.slice(0, 24));
    expect(error.message).not.toContain(token.slice(0, 25));
  });

  describe('options', () => {
    it('rejects a missing or invalid system identifier', () => {
      const token = encodeToken(PAYLOAD);
      thrown(() => decodeToken(token, {} as DecodeTokenOptions), 'INVALID_OPTION');
      thrown(() => decodeToken(token, { systemIdentifier: '' }), 'INVALID_OPTION');
      thrown(() => decodeToken(token, { systemIdentifier: '01' }), 'INVALID_OPTION');
      thrown(() => decodeToken(token, null as unknown as DecodeTokenOptions), 'INVALID_OPTION');
    });

    it('rejects a bad secret instead of ignoring it', () => {
      const token = encodeToken(PAYLOAD, SECRET);
      thrown(() => decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: '' }), 'INVALID_OPTION');
      thrown(() => decodeToken(token, { systemIdentifier: SYSTEM_ID, secret: 'too-short' }), 'INVALID_OPTION');
    });

    it('rejects a bad primary LSN', () => {
      const token = encodeToken(PAYLOAD);
      const bad = [-1n, 2n ** 64n, 5 as unknown as bigint];
      for (const primaryLsn of bad) {
        thrown(() => decodeToken(token, { systemIdentifier: SYSTEM_ID, primaryLsn }), 'INVALID_OPTION');
      }
    });
  });
});

describe('validateSecret', () => {
  it('gives no key for undefined', () => {
    expect(validateSecret(undefined)).toEqual([]);
  });

  it('returns the UTF-8 bytes of a string', () => {
    expect(validateSecret('0123456789abcdef')).toEqual([new TextEncoder().encode('0123456789abcdef')]);
    // 8 two-byte characters: 16 bytes, long enough.
    expect(validateSecret('éééééééé')[0]?.byteLength).toBe(16);
  });

  it('returns a copy of a Uint8Array', () => {
    const bytes = new Uint8Array(32).fill(7);
    const [result] = validateSecret(bytes);
    expect(result).toEqual(bytes);
    bytes.fill(0);
    expect(result?.[0]).toBe(7);
    expect(validateSecret(Buffer.alloc(16, 1))[0]?.byteLength).toBe(16);
  });

  it('keeps a list in order, the signing secret first', () => {
    const keys = validateSecret(['new-secret-0123456789', 'old-secret-0123456789']);
    expect(keys.map((key) => new TextDecoder().decode(key))).toEqual([
      'new-secret-0123456789',
      'old-secret-0123456789',
    ]);
    expect(thrown(() => validateSecret([]), 'INVALID_OPTION').message).toContain('non-empty list');
    expect(thrown(() => validateSecret(['new-secret-0123456789', 'short']), 'INVALID_OPTION').message).toContain(
      'tokenSecret[1]',
    );
  });

  it.each([
    ['an empty string', '', 'a string of 0 bytes'],
    ['a 15-byte string', '0123456789abcde', 'a string of 15 bytes'],
    ['a 15-byte Uint8Array', new Uint8Array(15), 'a Uint8Array of 15 bytes'],
    ['a number', 1234567890123456, 'a number'],
    ['null', null, 'null'],
    ['an ArrayBuffer', new ArrayBuffer(32), 'an object (ArrayBuffer)'],
    ['an array of numbers', Array.from({ length: 32 }, () => 1), 'tokenSecret[0]'],
  ])('rejects %s', (_label, secret, received) => {
    const error = thrown(() => validateSecret(secret), 'INVALID_OPTION');
    expect(error.message).toContain('tokenSecret');
    expect(error.message).toContain(received);
  });

  it('never echoes the value', () => {
    const secret = 'hunter2-short';
    const error = thrown(() => validateSecret(secret), 'INVALID_OPTION');
    expect(error.message).not.toContain(secret);
    expect(error.message).not.toContain('hunter2');
  });
});
