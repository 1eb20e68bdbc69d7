// Token formats and token generation: numeric tokens that keep chosen PAN digits but can never pass for a card.
import { VaultError } from '../errors';
import { luhnValid, mayHoldCardNumberAcrossPunctuation, type Pan } from './pan';

export type TokenFormat = 'bin6_last4' | 'last4' | 'opaque';

export const TOKEN_FORMATS: readonly TokenFormat[] = Object.freeze(['bin6_last4', 'last4', 'opaque'] as const);

export const DEFAULT_TOKEN_FORMAT: TokenFormat = 'bin6_last4';

export function isTokenFormat(v: unknown): v is TokenFormat {
  return typeof v === 'string' && (TOKEN_FORMATS as readonly string[]).includes(v);
}

/** Injected so domain/ imports no crypto package; crypto/random.ts is the production source. */
export interface TokenRandomness {
  /** `count` uniformly random decimal digits. */
  digits(count: number): string;
  /** A random URL-safe identifier of 16–64 characters from [A-Za-z0-9_-]. */
  opaqueId(): string;
}

/**
 * bin6_last4 keeps Pan.bin (fewer than 6 digits below 15, so at least 5 are drawn) and last4. Whatever the number
 * of free digits, exactly one middle in ten makes a Luhn-valid number, so a draw is rejected with probability 1/10
 * and 64 draws all failing (1e-64) means the randomness is broken.
 */
const MAX_DRAWS = 64;

const OPAQUE_ID = /^[A-Za-z0-9_-]{16,64}$/;

export function generateToken(format: TokenFormat, pan: Pan, random: TokenRandomness): string {
  switch (format) {
    case 'bin6_last4':
      return numericToken(pan.bin, pan.length - pan.bin.length - 4, pan.last4, random);
    case 'last4':
      return numericToken('', pan.length - 4, pan.last4, random);
    case 'opaque':
      return opaqueToken(random);
    default:
      throw new VaultError('unsupported_format', 'the token format is not one of the supported formats');
  }
}

/**
 * Rejection sampling: a Luhn-valid draw is thrown away whole and drawn again, so every acceptable token stays
 * equally likely (patching a digit would favour some tokens). A Luhn-invalid token also cannot equal the PAN,
 * because Pan.parse admits only Luhn-valid numbers.
 */
function numericToken(head: string, free: number, tail: string, random: TokenRandomness): string {
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const middle = random.digits(free);
    if (middle.length !== free || !/^[0-9]*$/.test(middle)) {
      throw new VaultError('internal_error', 'the token randomness returned malformed digits');
    }
    const candidate = head + middle + tail;
    if (!luhnValid(candidate)) return candidate;
  }
  throw new VaultError('token_space_exhausted', `no Luhn-invalid token was drawn in ${MAX_DRAWS} attempts`);
}

/**
 * An id whose digits could spell a card number is drawn again, as a Luhn-valid middle is: such a value is kept out of
 * the audit trail when a lookup of it fails (recordableToken), so no token is minted in that shape.
 */
function opaqueToken(random: TokenRandomness): string {
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const id = random.opaqueId();
    // A malformed id would mint a token that looksLikeToken rejects, i.e. one nobody could ever look up.
    if (!OPAQUE_ID.test(id)) {
      throw new VaultError('internal_error', 'the token randomness returned a malformed opaque id');
    }
    if (!mayHoldCardNumberAcrossPunctuation(id)) return `tok_${id}`;
  }
  throw new VaultError('token_space_exhausted', `no opaque id free of card-like digits was drawn in ${MAX_DRAWS} attempts`);
}

/** A cheap syntactic filter for path parameters, applied before any lookup. */
export function looksLikeToken(value: string): boolean {
  return /^[0-9]{12,19}$/.test(value) || /^tok_[A-Za-z0-9_-]{16,64}$/.test(value);
}

/**
 * The token an event may record for a request that named it, when no card answered to it (a denial, a failure):
 * null for an opaque value whose digits could spell a card number, which is far likelier a card sent by mistake
 * (`tok_4111…`) than a token. Such a value is still looked up, since ids minted before generation refused that
 * shape may hold one (about 3 in 10⁹); a success is recorded with its token, which the lookup found.
 */
export function recordableToken(token: string | null | undefined): string | null {
  if (token === null || token === undefined) return null;
  return token.startsWith('tok_') && mayHoldCardNumberAcrossPunctuation(token.slice(4)) ? null : token;
}
