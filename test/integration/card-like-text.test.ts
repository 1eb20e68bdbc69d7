// Text the vault keeps in PostgreSQL and shows again (a consent reference, a webhook URL, a session's origins, an
// API key's label) never holds a card number, however its digits are split or escaped: it is refused.
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

const PAN = '4111111111111111';
const split = (separator: string) => PAN.match(/.{4}/g)!.join(separator);

describe('free text that could hold a card number', () => {
  it('is refused as a consent reference, split by dots, underscores or spaced dashes', async () => {
    const { keys } = await h.tenant(['merchant']);
    const token = (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()))).body.token as string;
    for (const reference of [split('.'), split('_'), split('-.-')]) {
      const res = await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(bearer(keys.merchant!)).send({ enrolled: true, consent_reference: reference });
      expect({ reference, status: res.status, body: JSON.stringify(res.body).includes('1111.1111') }).toEqual({ reference, status: 400, body: false });
    }
    const [row] = await h.db.query<{ updater_consent_ref: string | null }>('SELECT updater_consent_ref FROM cards WHERE token = $1', [token]);
    expect(row!.updater_consent_ref).toBeNull();
  });

  it('is refused in a webhook URL, dotted, or percent-encoded behind one malformed escape', async () => {
    const { keys } = await h.tenant(['merchant']);
    const encoded = [...PAN].map((digit) => `%3${digit}`).join('');
    for (const url of [`https://hooks.shop.example/${split('.')}`, `https://hooks.shop.example/%ZZ/${encoded}`]) {
      const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(keys.merchant!)).send({ url });
      expect({ url, status: res.status, pointer: res.body.pointer }).toEqual({ url, status: 400, pointer: '/url' });
    }
    // A URL with ordinary numeric path ids is still taken.
    expect((await request(h.app).post('/v1/webhook-endpoints').set(bearer(keys.merchant!)).send({ url: 'https://hooks.shop.example/m/123456/h/7890' })).status).toBe(201);
  });

  it('is refused as a client session origin, and as an API key label', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const res = await request(h.app).post('/v1/client-sessions').set(bearer(keys.merchant!)).send({ allowed_origins: [`https://${split('.')}.shop.example`] });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'invalid_field' });
    await expect(h.parts.principals.issueApiKey(tenant.id, 'merchant', 'test', `till ${split('_')}`)).rejects.toMatchObject({ code: 'invalid_field' });
  });
});
