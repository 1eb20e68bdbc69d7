// The logger: the PAN scrubber's reach and limits, redacted paths, value-free error serialization, ISO time.
import { randomUUID } from 'node:crypto';
import { maskPanLike, createLogger } from '../../src/log';
import { VaultError } from '../../src/errors';
import { captureLog } from '../support/log-capture';
import { newPan } from '../support/pans';
import { PUBLISHED_TEST_CARDS } from '../support/test-cards';

const VISA_16 = '4111111111111111';
const AMEX_15 = '378282246310005';
const VISA_13 = '4222222222222';
const VISA_19 = '4111141011111111116';

function masked(digits: string): string {
  return `${'*'.repeat(digits.length - 4)}${digits.slice(-4)}`;
}

function grouped(digits: string, separator: string): string {
  return digits.match(/.{1,4}/g)!.join(separator);
}

describe('maskPanLike', () => {
  it('masks every published test card, keeping only the last 4 digits', () => {
    for (const { number } of PUBLISHED_TEST_CARDS) {
      const out = maskPanLike(`card ${number} declined`);
      expect(out).toBe(`card ${masked(number)} declined`);
      expect(out).not.toContain(number);
    }
  });

  it('masks runs of exactly 12 and 19 digits', () => {
    const twelve = newPan('411111', 12);
    expect(maskPanLike(twelve)).toBe(`********${twelve.slice(-4)}`);
    expect(maskPanLike(VISA_19)).toBe(`***************1116`);
  });

  it('masks a PAN split by single spaces, by single dashes, or by a mix of both', () => {
    expect(maskPanLike(`pan=${grouped(VISA_16, ' ')};`)).toBe('pan=************1111;');
    expect(maskPanLike(`pan=${grouped(VISA_16, '-')};`)).toBe('pan=************1111;');
    expect(maskPanLike('3782 822463 10005')).toBe(masked(AMEX_15));
    expect(maskPanLike('4111 1111-1111 1111')).toBe(masked(VISA_16));
    expect(maskPanLike(VISA_13.split('').join(' '))).toBe(masked(VISA_13));
  });

  it('masks a PAN inside JSON, as a string and as a number', () => {
    expect(maskPanLike(`{"number":"${VISA_16}"}`)).toBe('{"number":"************1111"}');
    const numeric = maskPanLike(`{"n":${AMEX_15}}`);
    expect(numeric).not.toContain(AMEX_15);
    expect(numeric).toContain('0005');
  });

  it('masks several PANs in one line, including two separated by a single space', () => {
    const out = maskPanLike(`${VISA_16} and ${AMEX_15}`);
    expect(out).toBe(`${masked(VISA_16)} and ${masked(AMEX_15)}`);
    // Two 16-digit PANs with one space between them read as one 32-digit run: all of it masked but the last 4.
    const joined = maskPanLike(`${VISA_16} ${VISA_16}`);
    expect(joined).not.toContain(VISA_16);
    expect(joined.replace(/[^0-9]/g, '')).toHaveLength(4);
  });

  it('masks a PAN glued to a shorter digit run by a separator', () => {
    expect(maskPanLike(`12-${VISA_16}`)).not.toContain(VISA_16);
    expect(maskPanLike(`${VISA_16}-12`)).not.toContain(VISA_16);
  });

  it('leaves runs of 11 digits alone, contiguous or split', () => {
    for (const run of ['41111111111', '4111 1111 111', '4111-1111-111']) {
      expect(maskPanLike(`id ${run} end`)).toBe(`id ${run} end`);
    }
  });

  it('masks runs of 20 or more digits too: a card number run together with its expiry, or with anything else', () => {
    for (const run of [`${VISA_16}1230`, `${VISA_19}00`, '1'.repeat(40)]) {
      expect(maskPanLike(`ref ${run}.`)).toBe(`ref ${masked(run)}.`);
    }
  });

  it('masks a PAN split by dots, underscores, slashes, tabs, double spaces or escaped newlines', () => {
    for (const separator of ['.', '_', '/', '\t', '  ', ' - ', '\\n']) {
      const line = `{"blocked":"https://${grouped(VISA_16, separator)}.evil.example/"}`;
      expect({ separator, out: maskPanLike(line) }).toEqual({ separator, out: '{"blocked":"https://************1111.evil.example/"}' });
    }
  });

  it('masks a PAN split by no-break, figure, thin or narrow no-break spaces, or by a URL-encoded space', () => {
    for (const separator of ['\u00a0', '\u2007', '\u2009', '\u202f', '%20', '%20%20', '\u00a0-\u00a0', '%20-%20', ' %20\u202f']) {
      const line = `{"blocked":"https://example.com/?q=${grouped(VISA_16, separator)}&x=1"}`;
      expect({ separator, out: maskPanLike(line) }).toEqual({ separator, out: '{"blocked":"https://example.com/?q=************1111&x=1"}' });
    }
    // The 2 and 0 of %20 are no digits of the card: the mask keeps the card's own length and last 4.
    expect(maskPanLike(`pan=${grouped(AMEX_15, '%20')};`)).toBe(`pan=${masked(AMEX_15)};`);
  });

  it('leaves 11 digits split by those spaces or by %20 alone', () => {
    for (const run of ['4111\u00a01111\u00a0111', '4111\u202f1111\u2009111', '4111%201111%20111']) {
      expect(maskPanLike(`id ${run} end`)).toBe(`id ${run} end`);
    }
  });

  it('leaves dates, times and IPv4 addresses of fewer than 12 digits alone', () => {
    for (const text of ['2026-11-21 20:40:31.405', '10.0.4.22', '172.16.254.1', 'exp 12/2030', 'v1.2.3']) {
      expect(maskPanLike(`at ${text};`)).toBe(`at ${text};`);
    }
  });

  it('leaves ISO timestamps, UUIDs with short digit runs, and short numbers untouched', () => {
    const line =
      '{"time":"2024-12-31T23:59:59.123Z","request_id":"9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f","amount":1999,"exp":"12/2030"}';
    expect(maskPanLike(line)).toBe(line);
    expect(maskPanLike('2025-01-01 12:00:00.000+01:00')).toBe('2025-01-01 12:00:00.000+01:00');
  });

  it('leaves a UUID alone whose digits run on across its dashes, in either case', () => {
    for (const id of ['550e8400-e29b-41d4-a716-446655440000', '550E8400-E29B-41D4-A716-446655440000', '12345678-9012-4345-a678-901234567890']) {
      expect(maskPanLike(`{"request_id":"${id}","tenant":"urn:uuid:${id}"}`)).toBe(`{"request_id":"${id}","tenant":"urn:uuid:${id}"}`);
    }
  });

  it('masks none of 100,000 random v4 UUIDs but one of decimal digits only', () => {
    const ids = Array.from({ length: 100_000 }, () => randomUUID());
    const maskedIds = ids.filter((id) => maskPanLike(`id=${id};`) !== `id=${id};`);
    // About 1 in 2.7 million is all digits (30 random nibbles and the variant's): 32 digits are masked like any run.
    expect(maskedIds).toEqual(ids.filter((id) => !/[a-f]/.test(id)));
  });

  it('masks a UUID-shaped string of decimal digits only, which can be written around a card number', () => {
    expect(maskPanLike(`id ${VISA_16.slice(0, 8)}-${VISA_16.slice(8, 12)}-${VISA_16.slice(12)}-1234-567890123456 end`)).toBe(
      `id ****************************3456 end`,
    );
  });

  it('masks a run that reaches past a UUID into digits before or after it', () => {
    const id = '550e8400-e29b-41d4-a716-446655440000';
    expect(maskPanLike(`${id} 1234`)).toBe('550e8400-e29b-41d4-a***************1234');
    expect(maskPanLike(`${id}-1234`)).toBe('550e8400-e29b-41d4-a***************1234');
    expect(maskPanLike(`4111 1111 ${VISA_16.slice(8, 16)}-e29b-41d4-a716-4466554400ab`)).toBe('************1111-e29b-41d4-a716-4466554400ab');
    expect(maskPanLike(`4111\\n1111\\n${VISA_16.slice(8, 16)}-e29b-41d4-a716-4466554400ab`)).toBe('************1111-e29b-41d4-a716-4466554400ab');
  });

  it('masks digits in a UUID-shaped window of a longer hex string, which is no UUID', () => {
    expect(maskPanLike('f550e8400-e29b-41d4-a716-446655440000')).toBe('f550e8400-e29b-41d4-a***********0000');
    expect(maskPanLike('550e8400-e29b-41d4-a716-446655440000a')).toBe('550e8400-e29b-41d4-a***********0000a');
  });

  it('still masks a PAN in every separator form on a line that also holds UUIDs', () => {
    const id = '550e8400-e29b-41d4-a716-446655440000';
    for (const separator of ['', ' ', '-', '.', '_', '/', '\t', '  ', ' - ', '\\n', '\u00a0', '\u2007', '\u2009', '\u202f', '%20']) {
      const line = `{"request_id":"${id}","note":"${grouped(VISA_16, separator)}","tenant":"${id}"}`;
      expect({ separator, out: maskPanLike(line) }).toEqual({ separator, out: `{"request_id":"${id}","note":"************1111","tenant":"${id}"}` });
    }
  });
});

describe('createLogger', () => {
  function logged(write: (log: ReturnType<typeof createLogger>) => void): { text: string; entries: Array<Record<string, unknown>> } {
    const capture = captureLog();
    write(createLogger({ level: 'info', destination: capture }));
    return { text: capture.lines.join(''), entries: capture.entries() };
  }

  it('masks a PAN passed as the message, interpolated or in a nested field', () => {
    const pan = newPan();
    const spaced = newPan('555555');
    const { text, entries } = logged((log) => {
      log.info(`charging ${pan}`);
      log.info('charging %s', pan);
      log.info({ request: { body: { note: `see ${grouped(spaced, ' ')}` } } }, 'nested');
      log.info({ list: [{ deeper: { value: pan } }] }, 'array');
    });
    expect(entries).toHaveLength(4);
    expect(text).not.toContain(pan);
    expect(text).not.toContain(spaced);
    expect(text).not.toContain(grouped(spaced, ' '));
    expect(entries[0]!.msg).toBe(`charging ${masked(pan)}`);
  });

  it('masks a PAN split by no-break spaces or %20 as pino writes it, in the message and in a field', () => {
    const pan = newPan();
    const { text } = logged((log) => {
      log.info(`charging ${grouped(pan, '\u00a0')}`);
      log.info({ url: `https://example.com/?q=${grouped(pan, '%20')}` }, 'redirect');
      log.info({ note: grouped(pan, '\u202f') }, 'note');
    });
    expect(text.replace(/%20|[^0-9]/g, '')).not.toContain(pan);
    expect(text).toContain(`************${pan.slice(-4)}`);
  });

  it('redacts card, number, authorization, apiKey and cvc at the top level and one level down', () => {
    const pan = newPan();
    const { text, entries } = logged((log) => {
      log.info({ card: { number: pan, cvc: '737' } }, 'card');
      log.info({ number: pan, cvc: '737', authorization: 'Bearer sk_test_AbCdEf', apiKey: 'ck_live_XyZ' }, 'top');
      log.info({ body: { card: 'x', number: pan, cvc: '737', apiKey: 'ck_live_XyZ' }, headers: { authorization: 'Bearer sk_test_AbCdEf' } }, 'nested');
      log.info({ req: { headers: { authorization: 'Bearer sk_test_AbCdEf' } } }, 'request');
    });
    expect(text).not.toContain(pan);
    expect(text).not.toContain('sk_test_AbCdEf');
    expect(text).not.toContain('ck_live_XyZ');
    expect(entries[0]!.card).toBe('[redacted]');
    expect(entries[1]).toMatchObject({ number: '[redacted]', cvc: '[redacted]', authorization: '[redacted]', apiKey: '[redacted]' });
    expect(entries[2]!.body).toEqual({ card: '[redacted]', number: '[redacted]', cvc: '[redacted]', apiKey: '[redacted]' });
    expect(entries[2]!.headers).toEqual({ authorization: '[redacted]' });
    expect(entries[3]!.req).toEqual({ headers: { authorization: '[redacted]' } });
  });

  it('redacts card fields and secrets two levels down and inside arrays', () => {
    const pan = newPan();
    const { text, entries } = logged((log) => {
      log.info({ x: { y: { cvc: '737', number: pan } }, items: [{ cvc: '737', secret: 'whsec_AbCdEf' }], a: { b: [{ password: 'hunter2xyz' }] } }, 'deep');
    });
    expect(text).not.toContain(pan);
    expect(text).not.toContain('737');
    expect(text).not.toContain('whsec_AbCdEf');
    expect(text).not.toContain('hunter2xyz');
    expect(entries[0]).toMatchObject({ x: { y: { cvc: '[redacted]', number: '[redacted]' } }, items: [{ cvc: '[redacted]', secret: '[redacted]' }] });
  });

  it('serializes an error logged under error or cause as under err: type and code, never its fields', () => {
    const driverError = Object.assign(new Error('duplicate key'), { code: '23505', detail: 'Key (holder)=(Jane Q Cardholder) already exists.' });
    const { text, entries } = logged((log) => {
      log.error({ error: driverError }, 'insert failed');
      log.error({ cause: driverError }, 'insert failed');
    });
    expect(text).not.toContain('Jane Q');
    expect(entries[0]!.error).toMatchObject({ type: 'Error', code: '23505' });
    expect(entries[1]!.cause).toMatchObject({ type: 'Error', code: '23505' });
  });

  it('writes time as an ISO string, not epoch milliseconds, and labels the level', () => {
    const { entries } = logged((log) => log.info('hello'));
    expect(entries[0]).toMatchObject({ level: 'info', service: 'cardvault', msg: 'hello' });
    expect(typeof entries[0]!.time).toBe('string');
    expect(entries[0]!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Math.abs(Date.parse(entries[0]!.time as string) - Date.now())).toBeLessThan(60_000);
  });

  it('keeps nothing the scrubber would mask in a plain line: no pid, hostname or epoch time', () => {
    const { text, entries } = logged((log) => log.info('hello'));
    expect(maskPanLike(text)).toBe(text);
    expect(entries[0]).not.toHaveProperty('pid');
    expect(entries[0]).not.toHaveProperty('hostname');
  });

  it('logs a VaultError by type, code and its value-free message', () => {
    const { entries } = logged((log) => log.error({ err: new VaultError('kms_unavailable', 'the KMS timed out') }, 'failed'));
    const err = entries[0]!.err as Record<string, unknown>;
    expect(err).toMatchObject({ type: 'VaultError', code: 'kms_unavailable', message: 'kms_unavailable: the KMS timed out' });
    expect(typeof err.stack).toBe('string');
  });

  it('logs another error by type and code only, never its message', () => {
    const driverError = Object.assign(new Error('duplicate key value (holder)=(Jane Q Cardholder)'), { code: '23505' });
    let syntaxError: unknown;
    try {
      JSON.parse('{"holder_name": Jane Q Cardholder}');
    } catch (err) {
      syntaxError = err;
    }
    expect((syntaxError as Error).message).toContain('Jane Q Car');

    const { text, entries } = logged((log) => {
      log.error({ err: driverError }, 'insert failed');
      log.error({ err: syntaxError }, 'parse failed');
    });
    expect(text).not.toContain('Jane Q Car');
    expect(text).not.toContain('Cardholder');
    expect(entries[0]!.err).toMatchObject({ type: 'Error', code: '23505' });
    expect(entries[1]!.err).toMatchObject({ type: 'SyntaxError' });
    expect(entries[0]!.err).not.toHaveProperty('message');
    expect(entries[1]!.err).not.toHaveProperty('message');
  });

  it('masks a PAN inside an error message wherever the error is logged', () => {
    const pan = newPan();
    const { text } = logged((log) => {
      log.error({ err: new Error(`upstream rejected ${pan}`) }, 'failed');
      log.error({ err: new VaultError('internal_error', `oops ${pan}`) }, 'failed');
      log.error(new Error(`upstream rejected ${pan}`));
    });
    expect(text).not.toContain(pan);
  });

  it('keeps the input quoted by a multi-line JSON.parse message out of the logged stack', () => {
    // A body with a newline inside the quoted excerpt: V8's message, and so the stack's first lines, span lines.
    let syntaxError: Error | undefined;
    try {
      JSON.parse('{"holder_name":\nJane Q}');
    } catch (err) {
      syntaxError = err as Error;
    }
    expect(syntaxError!.message).toContain('\n');
    expect(syntaxError!.stack).toContain('Jane Q');

    const { text, entries } = logged((log) => log.error({ err: syntaxError }, 'parse failed'));
    expect(entries[0]!.err).toMatchObject({ type: 'SyntaxError' });
    expect(text).not.toContain('Jane Q');
  });

  it('keeps the message of an error passed as the first argument out of the line', () => {
    let syntaxError: unknown;
    try {
      JSON.parse('{"holder_name": Jane Q Cardholder}');
    } catch (err) {
      syntaxError = err;
    }
    const { text, entries } = logged((log) => log.error(syntaxError));
    expect(entries[0]!.err).toMatchObject({ type: 'SyntaxError' });
    expect(text).not.toContain('Jane Q Car');
  });

  it('drops a non-Error thrown value, logging only its type', () => {
    const { text, entries } = logged((log) => log.error({ err: 'token 4111 1111 1111 1111 for Jane Q Cardholder' }, 'failed'));
    expect(entries[0]!.err).toEqual({ type: 'string' });
    expect(text).not.toContain('Cardholder');
  });

  it('writes nothing below its level', () => {
    const { entries } = logged((log) => {
      log.debug('hidden');
      log.warn('shown');
    });
    expect(entries.map((e) => e.msg)).toEqual(['shown']);
  });
});
