// The PAN value type: parsing and validation, brand detection by IIN range, and a mask for every printed form.
import { inspect } from 'node:util';
import { VaultError } from '../errors';

export type Brand = 'visa' | 'mastercard' | 'amex' | 'discover' | 'jcb' | 'diners' | 'unionpay' | 'maestro' | 'unknown';

/** An inclusive range over the first `from.length` digits; `from` and `to` always have the same length. */
interface IinRange {
  brand: Exclude<Brand, 'unknown'>;
  from: string;
  to: string;
}

function range(brand: IinRange['brand'], from: string, to = from): IinRange {
  return { brand, from, to };
}

/**
 * First match wins, so the order is the precedence. Ranges that overlap are:
 * - the named Maestro IINs sit inside the Maestro catch-alls at the bottom; they are listed so the table can be
 *   checked against the published list, and placed above Discover/UnionPay so no later edit can steal them;
 * - Discover and UnionPay claim their 6x ranges before the Maestro "any other 6x" catch-all;
 * - 622126–622925 is co-branded UnionPay/Discover. Those cards are issued by UnionPay members and carry the
 *   UnionPay mark; Discover only routes them in its acceptance footprint. We report the issuing brand
 *   (as Braintree's card-type tables do), so the range falls to UnionPay's 62 and has no Discover row.
 * Anything unclaimed (1x UATP, Mir 2200–2204, 59, 7x, 9x, ...) is 'unknown'.
 */
const IIN_RANGES: readonly IinRange[] = [
  range('amex', '34'),
  range('amex', '37'),
  range('diners', '300', '305'),
  range('diners', '3095'),
  range('diners', '36'),
  range('diners', '38', '39'),
  range('jcb', '3528', '3589'),
  range('visa', '4'),
  range('mastercard', '51', '55'),
  range('mastercard', '222100', '272099'),
  range('maestro', '5018'),
  range('maestro', '5020'),
  range('maestro', '5038'),
  range('maestro', '5893'),
  range('maestro', '6304'),
  range('maestro', '6759'),
  range('maestro', '6761', '6763'),
  range('discover', '6011'),
  range('discover', '644', '649'),
  range('discover', '65'),
  range('unionpay', '62'),
  // UnionPay's 81 series (8100–8171), issued since 2020 and now in the networks' published tables.
  range('unionpay', '8100', '8171'),
  range('maestro', '50'),
  range('maestro', '56', '58'),
  range('maestro', '6'),
];

export function detectBrand(digits: string): Brand {
  for (const { brand, from, to } of IIN_RANGES) {
    const prefix = digits.slice(0, from.length);
    // Same-length digit strings compare lexicographically exactly as they do numerically.
    if (prefix.length === from.length && prefix >= from && prefix <= to) return brand;
  }
  return 'unknown';
}

/** Luhn (mod 10) over a digits-only string; anything else is simply not valid. */
export function luhnValid(digits: string): boolean {
  if (!/^[0-9]+$/.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * Twelve digits in a row, or split by up to three spaces, dashes, dots or underscores between any two of them
 * ('4111 1111…', '4111.1111…', '4111_1111…'): as much of a card number as a check needs to see. Slashes and
 * colons do not join digits here (paths, ports and times are legitimately full of them).
 */
export const CARD_LIKE = /[0-9](?:[ ._-]{0,3}[0-9]){11}/;

/**
 * For text the vault keeps, echoes or logs but never expects a card in (names, labels, origins, ids): true when
 * it could hold one, so the text is refused or replaced instead of being written.
 */
export function mayHoldCardNumber(text: string): boolean {
  return CARD_LIKE.test(text);
}

/**
 * For header values the vault echoes, logs or audits (X-Request-Id, Idempotency-Key, tracestate): true when its
 * digits, read across any punctuation between them, could hold a card ('4111.1111.1111.1111', '4111_1111…',
 * '4111--1111…', '4111/1111…', '4111:1111…'). Stricter than mayHoldCardNumber, which leaves slashes, colons and
 * longer punctuation alone for URLs, paths and ports; both refuse a dotted IPv4 address of 12 digits.
 */
export function mayHoldCardNumberAcrossPunctuation(text: string): boolean {
  return CARD_LIKE.test(text.replace(/[^0-9A-Za-z]+/g, ''));
}

const MIN_LENGTH = 12;
const MAX_LENGTH = 19;

/**
 * PCI DSS 3.4.1: BIN and last 4 of a 12-digit PAN leave 2 digits hidden, one of them fixed by Luhn (10 candidates).
 * So at least this many digits stay hidden: a PAN shows its 6-digit BIN from 15 digits up, `length - 9` below.
 */
const MIN_HIDDEN_DIGITS = 5;
const BIN_LENGTH = 6;

export class Pan {
  // A #private field is invisible to JSON.stringify, Object.keys, spread and structured logging alike.
  readonly #digits: string;

  private constructor(digits: string) {
    this.#digits = digits;
  }

  /** Accepts a JSON string of 12–19 ASCII digits with a valid check digit; details name the rule, never the value. */
  static parse(input: unknown): Pan {
    if (typeof input !== 'string') {
      throw new VaultError('invalid_card_number', 'the card number must be a string of digits');
    }
    if (!/^[0-9]*$/.test(input)) {
      throw new VaultError('invalid_card_number', 'the card number must contain only the digits 0-9, without separators');
    }
    if (input.length < MIN_LENGTH || input.length > MAX_LENGTH) {
      throw new VaultError('invalid_card_number', `the card number must be ${MIN_LENGTH} to ${MAX_LENGTH} digits long`);
    }
    if (!luhnValid(input)) {
      throw new VaultError('invalid_card_number', 'the card number fails the Luhn check digit');
    }
    return new Pan(input);
  }

  /** The only way to the digits; grep for it in review. */
  reveal(): string {
    return this.#digits;
  }

  get length(): number {
    return this.#digits.length;
  }

  /**
   * The leading digits the vault may store, return, audit or keep in a token: the 6-digit BIN for 15 digits and
   * more; for 12–14 digits only the first 3–5, so that with last4 at least MIN_HIDDEN_DIGITS stay hidden.
   */
  get bin(): string {
    return this.#digits.slice(0, Math.min(BIN_LENGTH, this.#digits.length - 4 - MIN_HIDDEN_DIGITS));
  }

  get last4(): string {
    return this.#digits.slice(-4);
  }

  get brand(): Brand {
    return detectBrand(this.#digits);
  }

  equals(other: Pan): boolean {
    return this.#digits === other.#digits;
  }

  /** bin and last 4 with stars between, the same length as the PAN: no more than bin and last4 expose. */
  toString(): string {
    return `${this.bin}${'*'.repeat(this.#digits.length - this.bin.length - 4)}${this.last4}`;
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
