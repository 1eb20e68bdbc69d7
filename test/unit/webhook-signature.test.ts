// Webhook signatures: what a receiver accepts and everything it must refuse.
import { createHmac } from 'node:crypto';
import { signatureHeader, verifySignature } from '../../src/updater/webhooks/signature';

const SECRET = 'whsec_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const BODY = '{"id":"5d2c8e41-7a3b-4f9e-b1c6-8e0d4a2f7b93","type":"card.expiry_updated"}';
const T = 1_741_080_600;

describe('signatureHeader', () => {
  it('is t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the whole secret string>', () => {
    const expected = createHmac('sha256', SECRET).update(`${T}.${BODY}`).digest('hex');
    expect(signatureHeader(SECRET, T, BODY)).toBe(`t=${T},v1=${expected}`);
  });

  it('refuses a timestamp that is not whole unix seconds', () => {
    for (const t of [1.5, -1, Number.NaN]) expect(() => signatureHeader(SECRET, t, BODY)).toThrow(RangeError);
  });
});

describe('verifySignature', () => {
  const header = signatureHeader(SECRET, T, BODY);

  it('accepts a good signature within the tolerance, either side of the signed time', () => {
    expect(verifySignature(header, BODY, SECRET, T)).toBe(true);
    expect(verifySignature(header, BODY, SECRET, T + 300)).toBe(true);
    expect(verifySignature(header, BODY, SECRET, T - 300)).toBe(true);
  });

  it('rejects a tampered body, even by one byte or one trailing space', () => {
    expect(verifySignature(header, BODY.replace('expiry', 'expirx'), SECRET, T)).toBe(false);
    expect(verifySignature(header, `${BODY} `, SECRET, T)).toBe(false);
  });

  it('rejects a signature made with another secret', () => {
    expect(verifySignature(header, BODY, `${SECRET}x`, T)).toBe(false);
    expect(verifySignature(signatureHeader('whsec_other', T, BODY), BODY, SECRET, T)).toBe(false);
  });

  it('rejects a stale or future timestamp beyond the tolerance, and honours a custom tolerance', () => {
    expect(verifySignature(header, BODY, SECRET, T + 301)).toBe(false);
    expect(verifySignature(header, BODY, SECRET, T - 301)).toBe(false);
    expect(verifySignature(header, BODY, SECRET, T + 60, 30)).toBe(false);
    expect(verifySignature(header, BODY, SECRET, T + 60, 60)).toBe(true);
  });

  it('rejects a timestamp changed after signing', () => {
    expect(verifySignature(header.replace(`t=${T}`, `t=${T + 1}`), BODY, SECRET, T)).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['no timestamp', header.replace(/^t=[0-9]+,/, '')],
    ['no signature', `t=${T}`],
    ['two timestamps', `t=${T},${header}`],
    ['a short signature', header.slice(0, -2)],
    ['an upper-case signature', header.replace(/v1=([0-9a-f]+)/, (_m, hex: string) => `v1=${hex.toUpperCase()}`)],
    ['a non-numeric timestamp', header.replace(`t=${T}`, 't=soon')],
    ['spaces', header.replace(',', ', ')],
    ['a part without "="', `${header},junk`],
    ['an oversized header', `${header},x0=${'a'.repeat(2000)}`],
  ])('rejects a malformed header: %s', (_name, bad) => {
    expect(verifySignature(bad, BODY, SECRET, T)).toBe(false);
  });

  it('accepts the header when another v1 or an unknown scheme rides along (secret rotation, later schemes)', () => {
    const other = signatureHeader('whsec_previous', T, BODY).split(',')[1]!;
    expect(verifySignature(`${header},${other}`, BODY, SECRET, T)).toBe(true);
    expect(verifySignature(`${header},v2=abc`, BODY, SECRET, T)).toBe(true);
  });
});
