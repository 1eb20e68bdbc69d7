// Card expiry rules: a card is good through the last day of its expiry month (UTC).
import { VaultError } from '../errors';

/** How far ahead an expiry may be: issuers do not print cards valid for more than about 20 years. */
const MAX_YEARS_AHEAD = 30;

export function checkExpiry(month: number, year: number, now: Date): void {
  if (!Number.isInteger(month) || month < 1 || month > 12) {
    throw new VaultError('invalid_expiry', 'exp_month must be from 1 to 12', { pointer: '/card/exp_month' });
  }
  const thisYear = now.getUTCFullYear();
  if (!Number.isInteger(year) || year < 2000 || year > thisYear + MAX_YEARS_AHEAD) {
    throw new VaultError('invalid_expiry', `exp_year must be a four-digit year no more than ${MAX_YEARS_AHEAD} years ahead`, {
      pointer: '/card/exp_year',
    });
  }
  if (year * 12 + month < thisYear * 12 + now.getUTCMonth() + 1) {
    throw new VaultError('card_expired', 'the expiry month has passed', { pointer: '/card/exp_year' });
  }
}
