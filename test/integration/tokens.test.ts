import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { newPan, recordPan } from '../support/pans';
import { PUBLISHED_TEST_CARDS } from '../support/test-cards';
import { luhnValid } from '../../src/domain/pan';

let h: Harness;
let merchant: string;
let payments: string;

beforeAll(async () => {
  h = await buildHarness();
  const t = await h.tenant(['merchant', 'payments']);
  merchant = t.keys.merchant!;
  payments = t.keys.payments!;
});
afterAll(() => h.close());

const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
const card = (number: string, extra: Record<string, unknown> = {}) => ({ card: { number, exp_month: 12, exp_year: 2031, ...extra } });

describe('tokenize and detokenize', () => {
  it.each(PUBLISHED_TEST_CARDS.map((c) => [c.brand, c.number.length, c.number] as const))(
    'round-trips a published %s test card of %i digits',
    async (brand, length, number) => {
      recordPan(number);
      const created = await request(h.app).post('/v1/tokens').set(bearer(merchant)).send(card(number));
      expect([200, 201]).toContain(created.status);
      const body = created.body;
      // The 6-digit BIN from 15 digits up; below, length - 9 digits, so at least 5 stay hidden (PCI DSS 3.4.1).
      const bin = number.slice(0, Math.min(6, length - 9));
      expect(body.card).toMatchObject({ brand, bin, last4: number.slice(-4), exp_month: 12, exp_year: 2031 });
      expect(body.token).toHaveLength(length);
      expect(body.token.slice(0, bin.length)).toBe(bin);
      expect(body.token).not.toBe(number);
      expect(luhnValid(body.token)).toBe(false);
      expect(JSON.stringify(body)).not.toContain(number);

      const revealed = await request(h.app)
        .post(`/v1/tokens/${body.token}/detokenize`)
        .set(bearer(payments))
        .send({ purpose: 'authorization' });
      expect(revealed.status).toBe(200);
      expect(revealed.body).toEqual({ token: body.token, card: { number, exp_month: 12, exp_year: 2031 } });
    },
  );

  it('returns the same token with 200 when the PAN is already vaulted in the tenant', async () => {
    const pan = newPan();
    const first = await request(h.app).post('/v1/tokens').set(bearer(merchant)).send(card(pan));
    const second = await request(h.app).post('/v1/tokens').set(bearer(merchant)).send(card(pan));
    expect(first.status).toBe(201);
    expect(second.status).toBe(200);
    expect(second.body.token).toBe(first.body.token);
    expect(second.body.fingerprint).toBe(first.body.fingerprint);
  });
});
