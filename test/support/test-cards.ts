// Card numbers the suite may use: published PSP test numbers, and a generator for fresh PANs on test BINs.
import { randomInt } from 'node:crypto';
import { luhnValid, type Brand } from '../../src/domain/pan';

/**
 * Numbers published as test cards by Stripe, Braintree, Adyen and PAYONE; none is a live card. Together they
 * cover every brand and every length from 13 to 19 (12-digit PANs come from generateTestPan).
 */
export const PUBLISHED_TEST_CARDS: ReadonlyArray<{ brand: Brand; number: string }> = [
  { brand: 'visa', number: '4222222222222' }, // 13, Braintree/PayPal
  { brand: 'visa', number: '4111111111111111' },
  { brand: 'visa', number: '4242424242424242' }, // Stripe
  { brand: 'visa', number: '4012888888881881' },
  { brand: 'visa', number: '4111141011111111116' }, // 19, PAYONE
  { brand: 'mastercard', number: '5555555555554444' },
  { brand: 'mastercard', number: '5105105105105100' },
  { brand: 'mastercard', number: '5500000000000004' },
  { brand: 'mastercard', number: '2223003122003222' }, // 2-series, Stripe
  { brand: 'mastercard', number: '2720990000000015' }, // top of the 2-series, PAYONE
  { brand: 'amex', number: '378282246310005' }, // 15
  { brand: 'amex', number: '371449635398431' },
  { brand: 'amex', number: '340000000000009' },
  { brand: 'discover', number: '6011111111111117' },
  { brand: 'discover', number: '6011000990139424' },
  { brand: 'discover', number: '6445644564456445' }, // 644–649, Adyen
  { brand: 'jcb', number: '3566002020360505' },
  { brand: 'jcb', number: '3530111333300000' },
  { brand: 'jcb', number: '3528000000000007' },
  { brand: 'diners', number: '36227206271667' }, // 14, Stripe
  { brand: 'diners', number: '30569309025904' },
  { brand: 'diners', number: '38520000023237' },
  { brand: 'diners', number: '3056930009020004' },
  { brand: 'unionpay', number: '6200000000000005' },
  { brand: 'unionpay', number: '62123456789000003' }, // 17, Braintree
  { brand: 'unionpay', number: '621234567890000002' }, // 18, Braintree
  { brand: 'unionpay', number: '6205500000000000004' }, // 19, Stripe
  { brand: 'maestro', number: '6304000000000000' }, // Braintree
  { brand: 'maestro', number: '6759649826438453' },
  { brand: 'maestro', number: '6771830999991239343' }, // 19, Adyen
  { brand: 'unknown', number: '135410014004955' }, // UATP, Adyen
];

/**
 * A fresh Luhn-valid PAN: `prefix`, random digits, then the one check digit that makes it pass. Keep the prefix
 * on a test BIN (411111, 555555, 222300, ...) so a generated number can never be someone's card.
 */
export function generateTestPan(prefix = '411111', length = 16): string {
  if (!/^[0-9]*$/.test(prefix) || length < prefix.length + 1 || length > 19) {
    throw new Error('generateTestPan: the prefix must be digits and shorter than a length of at most 19');
  }
  let body = prefix;
  while (body.length < length - 1) body += String(randomInt(10));
  for (let check = 0; check <= 9; check++) {
    if (luhnValid(body + check)) return body + check;
  }
  throw new Error('generateTestPan: unreachable, one check digit always satisfies Luhn');
}
