// Token generation: shape and safety properties over many real draws, the rejection loop, and digit uniformity.
import { cryptoTokenRandomness } from '../../src/crypto/random';
import { isVaultError } from '../../src/errors';
import { luhnValid, Pan } from '../../src/domain/pan';
import {
  DEFAULT_TOKEN_FORMAT,
  generateToken,
  isTokenFormat,
  looksLikeToken,
  recordableToken,
  TOKEN_FORMATS,
  type TokenFormat,
  type TokenRandomness,
} from '../../src/domain/token';
import { generateTestPan } from '../support/test-cards';
import { errorOf } from '../support/error-of';

const TEST_BINS = ['411111', '555555', '222300', '601111', '620000'];


/** Randomness that hands out scripted middles in order and counts the draws. */
function scriptedRandomness(middles: string[], opaque = 'A'.repeat(22)): TokenRandomness & { draws: number } {
  const fake = {
    draws: 0,
    digits(count: number): string {
      const next = middles[Math.min(fake.draws, middles.length - 1)];
      fake.draws++;
      expect(next).toHaveLength(count);
      return next;
    },
    opaqueId: () => opaque,
  };
  return fake;
}

/** The first `count` middles, in numeric order, that make `bin + middle + last4` pass Luhn (or, with false, fail it). */
function middles(pan: Pan, passing: boolean, count: number): string[] {
  const free = pan.length - pan.bin.length - pan.last4.length;
  const found: string[] = [];
  for (let n = 0; found.length < count; n++) {
    const middle = String(n).padStart(free, '0');
    if (luhnValid(pan.bin + middle + pan.last4) === passing) found.push(middle);
  }
  return found;
}

describe('generateToken with the real randomness', () => {
  it('keeps length, digits-only, the kept digits, fails Luhn and differs from the PAN over 100,000 tokens', () => {
    const failures = new Map<string, number>();
    const fail = (what: string): void => void failures.set(what, (failures.get(what) ?? 0) + 1);
    let count = 0;
    for (let length = 12; length <= 19; length++) {
      for (let p = 0; p < 25; p++) {
        const pan = Pan.parse(generateTestPan(TEST_BINS[p % TEST_BINS.length], length));
        const digits = pan.reveal();
        for (const format of ['bin6_last4', 'last4'] as const) {
          const kept = format === 'bin6_last4' ? pan.bin : '';
          for (let i = 0; i < 250; i++) {
            const token = generateToken(format, pan, cryptoTokenRandomness);
            count++;
            const where = `${format}/${length}`;
            if (token.length !== length) fail(`${where}: wrong length`);
            if (!/^[0-9]+$/.test(token)) fail(`${where}: not digits only`);
            if (!token.startsWith(kept) || !token.endsWith(pan.last4)) fail(`${where}: kept digits lost`);
            if (luhnValid(token)) fail(`${where}: passes Luhn`);
            if (token === digits) fail(`${where}: equals the PAN`);
            if (!looksLikeToken(token)) fail(`${where}: not recognised as a token`);
          }
        }
      }
    }
    expect(count).toBeGreaterThanOrEqual(100_000);
    expect(Object.fromEntries(failures)).toEqual({});
  });

  it('keeps only the first 3 digits of a 12-digit PAN in its bin6_last4 token and draws digits 4 to 8 afresh', () => {
    const digits = generateTestPan('501800', 12);
    const pan = Pan.parse(digits);
    const draws = 10_000;
    const same = [0, 0, 0, 0, 0];
    const seen = [0, 1, 2, 3, 4].map(() => new Set<string>());
    for (let i = 0; i < draws; i++) {
      const token = generateToken('bin6_last4', pan, cryptoTokenRandomness);
      expect(token.slice(0, 3) + token.slice(-4)).toBe(digits.slice(0, 3) + digits.slice(-4));
      for (let p = 0; p < 5; p++) {
        if (token[3 + p] === digits[3 + p]) same[p]++;
        seen[p]!.add(token[3 + p]!);
      }
    }
    // Each free digit equals the PAN's one time in ten (σ ≈ 0.3%); a copied digit would match every time.
    for (let p = 0; p < 5; p++) {
      expect([p + 4, Math.abs(same[p]! / draws - 0.1) < 0.02]).toEqual([p + 4, true]);
      expect([p + 4, seen[p]!.size]).toEqual([p + 4, 10]);
    }
  });

  it('makes opaque tokens that are non-numeric, well formed and unique', () => {
    const pan = Pan.parse(generateTestPan());
    const tokens = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const token = generateToken('opaque', pan, cryptoTokenRandomness);
      expect(token).toMatch(/^tok_[A-Za-z0-9_-]{22}$/);
      expect(looksLikeToken(token)).toBe(true);
      tokens.add(token);
    }
    expect(tokens.size).toBe(20_000);
  });
});

describe('generateToken rejection loop', () => {
  const pan = Pan.parse(generateTestPan('411111', 12));
  const ownMiddle = pan.reveal().slice(pan.bin.length, -4);
  const otherValidMiddle = middles(pan, true, 2).find((m) => m !== ownMiddle)!;
  const invalidMiddle = middles(pan, false, 1)[0]!;

  it('asks for every digit of a 12-digit PAN but its first 3 and last 4: five, none of them copied', () => {
    const random = scriptedRandomness([invalidMiddle]);
    expect(invalidMiddle).toHaveLength(5);
    expect(generateToken('bin6_last4', pan, random)).toBe(pan.reveal().slice(0, 3) + invalidMiddle + pan.last4);
  });

  it('draws the whole middle again while it makes a Luhn-valid number, then keeps the first invalid one', () => {
    const random = scriptedRandomness([ownMiddle, otherValidMiddle, invalidMiddle]);
    expect(generateToken('bin6_last4', pan, random)).toBe(pan.bin + invalidMiddle + pan.last4);
    expect(random.draws).toBe(3);
  });

  it('gives up with token_space_exhausted after 64 Luhn-valid draws', () => {
    const random = scriptedRandomness([ownMiddle]);
    const err = errorOf(() => generateToken('bin6_last4', pan, random));
    expect(isVaultError(err, 'token_space_exhausted')).toBe(true);
    expect(random.draws).toBe(64);
  });

  it('refuses malformed randomness with internal_error instead of minting a bad token', () => {
    const shortDigits: TokenRandomness = { digits: () => '1', opaqueId: () => 'A'.repeat(22) };
    const letters: TokenRandomness = { digits: (n) => 'x'.repeat(n), opaqueId: () => 'A'.repeat(22) };
    const badOpaque: TokenRandomness = { digits: (n) => '0'.repeat(n), opaqueId: () => 'short' };
    expect(isVaultError(errorOf(() => generateToken('bin6_last4', pan, shortDigits)), 'internal_error')).toBe(true);
    expect(isVaultError(errorOf(() => generateToken('last4', pan, letters)), 'internal_error')).toBe(true);
    expect(isVaultError(errorOf(() => generateToken('opaque', pan, badOpaque)), 'internal_error')).toBe(true);
  });

  it('rejects a format outside the union with unsupported_format', () => {
    const err = errorOf(() => generateToken('pan' as TokenFormat, pan, cryptoTokenRandomness));
    expect(isVaultError(err, 'unsupported_format')).toBe(true);
  });
});

describe('cryptoTokenRandomness', () => {
  const EXPECTED = 100_000;

  function digitCounts(text: string): number[] {
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < text.length; i++) counts[text.charCodeAt(i) - 48]++;
    return counts;
  }

  function chiSquare(counts: number[]): number {
    return counts.reduce((sum, c) => sum + (c - EXPECTED) ** 2 / EXPECTED, 0);
  }

  it('draws digits uniformly over 0-9 in one large draw', () => {
    const text = cryptoTokenRandomness.digits(1_000_000);
    expect(text).toMatch(/^[0-9]{1000000}$/);
    const counts = digitCounts(text);
    for (const c of counts) expect(Math.abs(c - EXPECTED)).toBeLessThan(EXPECTED * 0.05);
    // Plain `byte % 10` would favour 0-5 by 4% and score ~240 here; 60 is a 1-in-10^10 fluke for a fair source.
    expect(chiSquare(counts)).toBeLessThan(60);
  });

  it('draws digits uniformly over 0-9 across many token-sized draws', () => {
    let text = '';
    for (let i = 0; i < 100_000; i++) text += cryptoTokenRandomness.digits(10);
    expect(text).toHaveLength(1_000_000);
    const counts = digitCounts(text);
    for (const c of counts) expect(Math.abs(c - EXPECTED)).toBeLessThan(EXPECTED * 0.05);
    expect(chiSquare(counts)).toBeLessThan(60);
  });

  it('returns exactly the digits asked for, including none', () => {
    expect(cryptoTokenRandomness.digits(0)).toBe('');
    for (let count = 1; count <= 19; count++) expect(cryptoTokenRandomness.digits(count)).toMatch(new RegExp(`^[0-9]{${count}}$`));
  });

  it('rejects a negative or fractional digit count with internal_error', () => {
    expect(isVaultError(errorOf(() => cryptoTokenRandomness.digits(-1)), 'internal_error')).toBe(true);
    expect(isVaultError(errorOf(() => cryptoTokenRandomness.digits(1.5)), 'internal_error')).toBe(true);
  });

  it('draws an opaque id again while its digits could spell a card number', () => {
    const ids = ['4111111111111111AAAAAA', '4111-1111_1111-1111AAA', 'A'.repeat(22)];
    const random = { ...scriptedRandomness([]), opaqueId: () => ids.shift()! };
    expect(generateToken('opaque', Pan.parse(generateTestPan()), random)).toBe(`tok_${'A'.repeat(22)}`);
    expect(ids).toHaveLength(0);
  });

  it('makes 22-character base64url opaque ids', () => {
    expect(cryptoTokenRandomness.opaqueId()).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});

describe('looksLikeToken', () => {
  it.each(['123456789012', '1234567890123456789', `tok_${'a'.repeat(16)}`, `tok_${'Z9_-'.repeat(16)}`])(
    'accepts %s',
    (value) => expect(looksLikeToken(value)).toBe(true),
  );

  it.each([
    '12345678901',
    '12345678901234567890',
    `tok_${'a'.repeat(15)}`,
    `tok_${'a'.repeat(65)}`,
    `tok_${'a'.repeat(15)}=`,
    `tok_${'a'.repeat(15)}/`,
    '１２３４５６７８９０１２',
    '1234 5678 9012',
    '../../etc/passwd',
    '',
  ])('rejects %j', (value) => expect(looksLikeToken(value)).toBe(false));
});

describe('recordableToken', () => {
  it('keeps a token, and a numeric one (never Luhn-valid) whatever its digits', () => {
    for (const token of [`tok_${'Ab_-'.repeat(5)}xy`, '411111123456781234', `tok_${'1'.repeat(11)}a${'1'.repeat(10)}`]) {
      expect(recordableToken(token)).toBe(token);
    }
  });

  it.each(['tok_4111111111111111', 'tok_4111-1111-1111-1111', 'tok_4111_1111____1111_1111aa', 'tok_aa411111111111aa'])(
    'records nothing for %j, whose digits could spell a card',
    (value) => expect(recordableToken(value)).toBeNull(),
  );

  it('records nothing when there is no token', () => {
    expect(recordableToken(undefined)).toBeNull();
    expect(recordableToken(null)).toBeNull();
  });
});

describe('token formats', () => {
  it('lists the three formats and defaults to bin6_last4', () => {
    expect([...TOKEN_FORMATS]).toEqual(['bin6_last4', 'last4', 'opaque']);
    expect(DEFAULT_TOKEN_FORMAT).toBe('bin6_last4');
    expect(Object.isFrozen(TOKEN_FORMATS)).toBe(true);
  });

  it('recognises only the listed formats', () => {
    for (const format of TOKEN_FORMATS) expect(isTokenFormat(format)).toBe(true);
    for (const other of ['BIN6_LAST4', 'pan', '', null, 1, {}]) expect(isTokenFormat(other)).toBe(false);
  });
});
