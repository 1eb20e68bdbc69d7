// checkExpiry: a card is good through the last day of its expiry month in UTC; impossible months and years are invalid.
import { checkExpiry } from '../../src/domain/expiry';
import { isVaultError, type ErrorCode } from '../../src/errors';

function outcome(month: number, year: number, now: Date): ErrorCode | 'valid' {
  try {
    checkExpiry(month, year, now);
    return 'valid';
  } catch (err) {
    if (isVaultError(err)) return err.code;
    throw err;
  }
}

function pointer(month: number, year: number, now: Date): string | undefined {
  try {
    checkExpiry(month, year, now);
  } catch (err) {
    if (isVaultError(err)) return err.pointer;
    throw err;
  }
  return undefined;
}

const MID_JUNE_2025 = new Date('2025-06-15T12:00:00Z');

describe('checkExpiry', () => {
  it('accepts the current month, next month and later years', () => {
    expect(outcome(6, 2025, MID_JUNE_2025)).toBe('valid');
    expect(outcome(7, 2025, MID_JUNE_2025)).toBe('valid');
    expect(outcome(1, 2026, MID_JUNE_2025)).toBe('valid');
    expect(outcome(12, 2040, MID_JUNE_2025)).toBe('valid');
  });

  it('refuses last month, and any month of an earlier year, with card_expired', () => {
    expect(outcome(5, 2025, MID_JUNE_2025)).toBe('card_expired');
    expect(outcome(12, 2024, MID_JUNE_2025)).toBe('card_expired');
    expect(outcome(12, 2000, MID_JUNE_2025)).toBe('card_expired');
  });

  it('keeps a card good through the last millisecond of its month, and expires it at the next', () => {
    expect(outcome(6, 2025, new Date('2025-06-30T23:59:59.999Z'))).toBe('valid');
    expect(outcome(6, 2025, new Date('2025-07-01T00:00:00.000Z'))).toBe('card_expired');
    expect(outcome(2, 2024, new Date('2024-02-29T23:59:59.999Z'))).toBe('valid');
  });

  it('crosses the year end: December is good through 31 December and expired on 1 January', () => {
    expect(outcome(12, 2024, new Date('2024-12-31T23:59:59.999Z'))).toBe('valid');
    expect(outcome(12, 2024, new Date('2025-01-01T00:00:00.000Z'))).toBe('card_expired');
    expect(outcome(1, 2025, new Date('2025-01-01T00:00:00.000Z'))).toBe('valid');
    expect(outcome(11, 2024, new Date('2024-12-01T00:00:00.000Z'))).toBe('card_expired');
  });

  it('decides in UTC, whatever the offset the instant was written with', () => {
    // 00:30 on 1 January in Paris is still 31 December in UTC.
    expect(outcome(12, 2024, new Date('2025-01-01T00:30:00+01:00'))).toBe('valid');
    // 23:30 on 31 December in New York is already 1 January in UTC.
    expect(outcome(12, 2024, new Date('2024-12-31T23:30:00-05:00'))).toBe('card_expired');
  });

  it('refuses month 0, 13 and negative months with invalid_expiry on exp_month', () => {
    for (const month of [0, 13, -1, -0, 100]) {
      expect(outcome(month, 2030, MID_JUNE_2025)).toBe('invalid_expiry');
      expect(pointer(month, 2030, MID_JUNE_2025)).toBe('/card/exp_month');
    }
  });

  it('accepts months 1 and 12 of a future year', () => {
    expect(outcome(1, 2030, MID_JUNE_2025)).toBe('valid');
    expect(outcome(12, 2030, MID_JUNE_2025)).toBe('valid');
  });

  it('refuses non-integer months and years with invalid_expiry', () => {
    for (const month of [6.5, Number.NaN, Number.POSITIVE_INFINITY, '6' as unknown as number]) {
      expect(outcome(month, 2030, MID_JUNE_2025)).toBe('invalid_expiry');
    }
    for (const year of [2030.5, Number.NaN, Number.POSITIVE_INFINITY, '2030' as unknown as number]) {
      expect(outcome(6, year, MID_JUNE_2025)).toBe('invalid_expiry');
      expect(pointer(6, year, MID_JUNE_2025)).toBe('/card/exp_year');
    }
  });

  it('refuses a year before 2000, including two-digit years, with invalid_expiry on exp_year', () => {
    for (const year of [1999, 30, 25, 0, -2030]) {
      expect(outcome(6, year, MID_JUNE_2025)).toBe('invalid_expiry');
      expect(pointer(6, year, MID_JUNE_2025)).toBe('/card/exp_year');
    }
  });

  it('accepts a year exactly 30 years ahead and refuses 31, relative to now', () => {
    expect(outcome(12, 2055, MID_JUNE_2025)).toBe('valid');
    expect(outcome(1, 2056, MID_JUNE_2025)).toBe('invalid_expiry');
    expect(outcome(1, 2056, new Date('2026-01-01T00:00:00Z'))).toBe('valid');
  });

  it('reports an invalid month before looking at the year', () => {
    expect(pointer(13, 1999, MID_JUNE_2025)).toBe('/card/exp_month');
  });

  it('names the field but never the value in its messages', () => {
    for (const [month, year] of [
      [13, 2030],
      [6, 1987],
      [5, 2025],
    ] as const) {
      try {
        checkExpiry(month, year, MID_JUNE_2025);
        throw new Error('expected checkExpiry to throw');
      } catch (err) {
        expect(isVaultError(err)).toBe(true);
        expect((err as Error).message).not.toContain(String(year));
        expect((err as Error).message).not.toMatch(new RegExp(`\\b${month}\\b`));
      }
    }
  });
});
