// Pan: Luhn, brand ranges, what parse accepts and rejects, and that no printed form shows the digits.
import { inspect } from 'node:util';
import { isVaultError } from '../../src/errors';
import { detectBrand, luhnValid, mayHoldCardNumber, mayHoldCardNumberAcrossPunctuation, Pan, type Brand } from '../../src/domain/pan';
import { generateTestPan, PUBLISHED_TEST_CARDS } from '../support/test-cards';

function parseError(input: unknown): unknown {
  try {
    Pan.parse(input);
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('luhnValid', () => {
  it('accepts numbers whose check digit is right', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('79927398713')).toBe(true);
    expect(luhnValid('0')).toBe(true);
  });

  it('rejects a number with any single digit changed', () => {
    const pan = '4111111111111111';
    for (let i = 0; i < pan.length; i++) {
      const changed = pan.slice(0, i) + String((Number(pan[i]) + 1) % 10) + pan.slice(i + 1);
      expect(luhnValid(changed)).toBe(false);
    }
  });

  it('rejects the empty string and anything that is not only digits', () => {
    expect(luhnValid('')).toBe(false);
    expect(luhnValid('4111 1111 1111 1111')).toBe(false);
    expect(luhnValid('0a')).toBe(false);
  });
});

describe('detectBrand', () => {
  // [6-digit prefix, brand]: the edges of every range, including the overlaps the precedence order settles.
  const cases: Array<[string, Brand]> = [
    ['400000', 'visa'],
    ['499999', 'visa'],
    ['510000', 'mastercard'],
    ['559999', 'mastercard'],
    ['222099', 'unknown'],
    ['222100', 'mastercard'],
    ['272099', 'mastercard'],
    ['272100', 'unknown'],
    ['340000', 'amex'],
    ['370000', 'amex'],
    ['350000', 'unknown'],
    ['601100', 'discover'],
    ['601000', 'maestro'],
    ['644000', 'discover'],
    ['649999', 'discover'],
    ['643999', 'maestro'],
    ['650000', 'discover'],
    ['622126', 'unionpay'], // co-branded with Discover: the issuing brand wins
    ['622925', 'unionpay'],
    ['620000', 'unionpay'],
    ['810000', 'unionpay'],
    ['817199', 'unionpay'],
    ['817200', 'unknown'],
    ['352800', 'jcb'],
    ['358999', 'jcb'],
    ['352799', 'unknown'],
    ['359000', 'unknown'],
    ['300000', 'diners'],
    ['305999', 'diners'],
    ['306000', 'unknown'],
    ['309500', 'diners'],
    ['360000', 'diners'],
    ['380000', 'diners'],
    ['399999', 'diners'],
    ['501800', 'maestro'],
    ['502000', 'maestro'],
    ['503800', 'maestro'],
    ['500000', 'maestro'],
    ['560000', 'maestro'],
    ['589300', 'maestro'],
    ['590000', 'unknown'],
    ['630400', 'maestro'],
    ['675900', 'maestro'],
    ['676100', 'maestro'],
    ['676300', 'maestro'],
    ['690000', 'maestro'],
    ['220000', 'unknown'], // Mir
    ['135410', 'unknown'], // UATP
    ['900000', 'unknown'],
  ];

  it.each(cases)('maps IIN %s to %s', (prefix, brand) => {
    expect(detectBrand(`${prefix}0000000000`)).toBe(brand);
  });

  it('returns unknown for a prefix too short to decide', () => {
    expect(detectBrand('')).toBe('unknown');
    expect(detectBrand('3')).toBe('unknown');
  });
});

describe('Pan.parse', () => {
  it.each(PUBLISHED_TEST_CARDS.map((card) => [card.brand, card.number.length, card.number]))(
    'parses the published %s test card of %i digits to its brand',
    (brand, length, number) => {
      const pan = Pan.parse(number);
      expect(pan.brand).toBe(brand);
      expect(pan.length).toBe(length);
    },
  );

  it('has a published test card for every brand and every length from 13 to 19', () => {
    const brands = new Set(PUBLISHED_TEST_CARDS.map((card) => card.brand));
    const lengths = new Set(PUBLISHED_TEST_CARDS.map((card) => card.number.length));
    expect([...brands].sort()).toEqual(
      ['amex', 'diners', 'discover', 'jcb', 'maestro', 'mastercard', 'unionpay', 'unknown', 'visa'],
    );
    for (let length = 13; length <= 19; length++) expect(lengths.has(length)).toBe(true);
  });

  it('accepts generated PANs of every length from 12 to 19', () => {
    for (let length = 12; length <= 19; length++) {
      const number = generateTestPan('411111', length);
      const pan = Pan.parse(number);
      expect(pan.length).toBe(length);
      expect(pan.reveal()).toBe(number);
      expect(pan.bin).toBe(number.slice(0, Math.min(6, length - 9)));
      expect(pan.last4).toBe(number.slice(-4));
    }
  });

  const good = '4111111111111111';
  const badInputs: Array<[string, unknown, RegExp]> = [
    ['too short (11 digits)', generateTestPan('411111', 11), /12 to 19 digits/],
    ['too long (20 digits)', `${good}0000`, /12 to 19 digits/],
    ['empty', '', /12 to 19 digits/],
    ['spaced', '4111 1111 1111 1111', /only the digits/],
    ['dashed', '4111-1111-1111-1111', /only the digits/],
    ['padded', ` ${good}`, /only the digits/],
    ['with a trailing newline', `${good}\n`, /only the digits/],
    ['with letters', '4111111111111a11', /only the digits/],
    ['in full-width unicode digits', '４１１１１１１１１１１１１１１１', /only the digits/],
    ['in Arabic-Indic digits', '٤١١١١١١١١١١١١١١١', /only the digits/],
    ['failing Luhn', '4111111111111112', /Luhn/],
    ['a JSON number', 4111111111111111, /string/],
    ['a bigint', 4111111111111111n, /string/],
    ['null', null, /string/],
    ['undefined', undefined, /string/],
    ['an array of digits', [...good], /string/],
    ['a String object', new String(good), /string/],
  ];

  it.each(badInputs)('rejects a PAN that is %s with invalid_card_number', (_label, input, rule) => {
    const err = parseError(input);
    expect(isVaultError(err, 'invalid_card_number')).toBe(true);
    const vaultError = err as Error & { detail: string };
    expect(vaultError.detail).toMatch(rule);
  });

  it('never repeats the rejected value in the error', () => {
    const near = '4111111111111112';
    for (const input of [near, `${near} `, `${near}0000`, Number(near)]) {
      const err = parseError(input) as Error & { detail: string };
      const everything = `${err.message} ${err.detail} ${JSON.stringify(err)} ${inspect(err)}`;
      expect(everything).not.toContain('411111111111');
    }
  });
});

describe('Pan.bin', () => {
  // PCI DSS 3.4.1: BIN and last 4 of a 12-digit PAN leave 2 unknown digits, one of them the check digit.
  it.each([
    [12, 3],
    [13, 4],
    [14, 5],
    [15, 6],
    [16, 6],
    [19, 6],
  ])('discloses, for a PAN of %i digits, only its first %i digits, so at least 5 stay hidden', (length, leading) => {
    const number = generateTestPan('501800', length);
    const pan = Pan.parse(number);
    expect(pan.bin).toBe(number.slice(0, leading));
    expect(length - pan.bin.length - pan.last4.length).toBeGreaterThanOrEqual(5);
    expect(String(pan)).toBe(`${number.slice(0, leading)}${'*'.repeat(length - leading - 4)}${number.slice(-4)}`);
  });

  it('still detects the brand from the whole number when the disclosed digits cannot tell it', () => {
    const pan = Pan.parse(generateTestPan('601111', 12));
    expect(pan.bin).toBe('601');
    expect(detectBrand(pan.bin)).not.toBe('discover');
    expect(pan.brand).toBe('discover');
  });

  it('keeps the 6-digit BIN of the published 15-digit American Express test card', () => {
    const pan = Pan.parse('378282246310005');
    expect([pan.bin, pan.last4, String(pan)]).toEqual(['378282', '0005', '378282*****0005']);
  });
});

describe('Pan masking', () => {
  const number = '4111111111111111';
  const pan = Pan.parse(number);

  it('prints the first 6 and last 4 with stars between, at the PAN length', () => {
    expect(String(pan)).toBe('411111******1111');
    expect(Pan.parse(generateTestPan('555555', 12)).toString()).toMatch(/^555\*{5}[0-9]{4}$/);
    expect(Pan.parse(generateTestPan('222300', 19)).toString()).toMatch(/^222300\*{9}[0-9]{4}$/);
  });

  it('never shows the digits through String, JSON, inspect, template literals, keys or spread', () => {
    const printed = [
      String(pan),
      `${pan}`,
      'pan: ' + pan,
      JSON.stringify({ pan }),
      JSON.stringify(pan),
      inspect(pan),
      inspect({ nested: { pan } }, { depth: 10, showHidden: true }),
      JSON.stringify({ ...pan }),
      Object.keys(pan).join(','),
      Object.getOwnPropertyNames(pan).join(','),
    ];
    for (const text of printed) expect(text).not.toContain(number);
    expect(JSON.stringify({ pan })).toBe('{"pan":"411111******1111"}');
    expect(inspect(pan)).toBe('411111******1111');
  });

  it('gives the digits only through reveal', () => {
    expect(pan.reveal()).toBe(number);
  });

  it('reports the brand, bin and last4', () => {
    expect(pan.brand).toBe('visa');
    expect(pan.bin).toBe('411111');
    expect(pan.last4).toBe('1111');
    expect(pan.length).toBe(16);
  });

  it('compares by digits', () => {
    expect(pan.equals(Pan.parse(number))).toBe(true);
    expect(pan.equals(Pan.parse('4242424242424242'))).toBe(false);
  });
});

describe('mayHoldCardNumber and mayHoldCardNumberAcrossPunctuation', () => {
  const pan = '4111111111111111';
  const spelled = (sep: string) => pan.match(/.{4}/g)!.join(sep);

  it('both see twelve digits in a row, or split by single spaces or dashes', () => {
    for (const text of [pan, `req-${pan}`, spelled(' '), spelled('-'), pan.split('').join('-')]) {
      expect([text, mayHoldCardNumber(text), mayHoldCardNumberAcrossPunctuation(text)]).toEqual([text, true, true]);
    }
  });

  it('both see digits split by dots, underscores or up to three spaces and dashes', () => {
    for (const text of [spelled('.'), spelled('_'), spelled('--'), spelled(' . '), `https://${spelled('.')}.shop.example`]) {
      expect([text, mayHoldCardNumber(text), mayHoldCardNumberAcrossPunctuation(text)]).toEqual([text, true, true]);
    }
  });

  it('only the header check sees digits split by slashes, colons or longer punctuation', () => {
    for (const text of [spelled('/'), `id:${spelled(':')}`, spelled(' -- ')]) {
      expect([text, mayHoldCardNumber(text), mayHoldCardNumberAcrossPunctuation(text)]).toEqual([text, false, true]);
    }
  });

  it('neither sees a card where letters break the digits, or in fewer than twelve digits', () => {
    for (const text of ['req-01HZX3A9K2', '4111a1111b1111c1111', '192.168.100.20', 'order-2026-11-21', '12345678901']) {
      expect([text, mayHoldCardNumber(text), mayHoldCardNumberAcrossPunctuation(text)]).toEqual([text, false, false]);
    }
  });
});
