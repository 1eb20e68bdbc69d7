import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody, countCards } from '../support/http';
import { newPan, recordPan } from '../support/pans';

let h: Harness;
let tenantId: string;
let merchant: string;

beforeAll(async () => {
  h = await buildHarness();
  const t = await h.tenant(['merchant']);
  tenantId = t.tenant.id;
  merchant = t.keys.merchant!;
});
afterAll(() => h.close());

const post = (body: unknown, contentType = 'application/json') =>
  request(h.app)
    .post('/v1/tokens')
    .set(bearer(merchant))
    .set('Content-Type', contentType)
    .send(typeof body === 'string' ? body : JSON.stringify(body));

function expectProblem(res: request.Response, status: number, code: string, submitted?: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, type: `urn:cardvault:problem:${code}` });
  expect(typeof res.body.title).toBe('string');
  expect(res.text).not.toMatch(/\bat .*\.(ts|js):\d+/);
  if (submitted) expect(res.text).not.toContain(submitted);
}

const now = new Date();
const lastMonth = now.getUTCMonth() === 0 ? { m: 12, y: now.getUTCFullYear() - 1 } : { m: now.getUTCMonth(), y: now.getUTCFullYear() };

describe('tokenize rejects bad input with its own code and writes nothing', () => {
  const pan = recordPan('4111111111111111');
  const cases: Array<[string, () => unknown, number, string, string?]> = [
    ['a PAN that fails Luhn', () => cardBody('4111111111111112'), 400, 'invalid_card_number', '4111111111111112'],
    ['a PAN of 11 digits', () => cardBody('41111111113'), 400, 'invalid_card_number', '41111111113'],
    ['a PAN of 20 digits', () => cardBody('41111111111111111113'), 400, 'invalid_card_number', '41111111111111111113'],
    ['a PAN with spaces', () => cardBody('4111 1111 1111 1111'), 400, 'invalid_card_number', '4111 1111 1111 1111'],
    ['a PAN in unicode digits', () => cardBody('４１１１１１１１１１１１１１１１'), 400, 'invalid_card_number'],
    ['a PAN sent as a JSON number', () => ({ card: { number: 4111111111111111, exp_month: 12, exp_year: 2031 } }), 400, 'invalid_type', pan],
    ['a month of 13', () => cardBody(pan, { exp_month: 13 }), 400, 'invalid_expiry', pan],
    ['a month of 0', () => cardBody(pan, { exp_month: 0 }), 400, 'invalid_expiry', pan],
    ['a two-digit year', () => cardBody(pan, { exp_year: 31 }), 400, 'invalid_expiry', pan],
    ['an expired card', () => cardBody(pan, { exp_month: lastMonth.m, exp_year: lastMonth.y }), 400, 'card_expired', pan],
    ['a month as a string', () => cardBody(pan, { exp_month: '12' }), 400, 'invalid_type', pan],
    ['a fractional month', () => cardBody(pan, { exp_month: 1.5 }), 400, 'invalid_type', pan],
    ['an unknown card field (a PIN)', () => cardBody(pan, { pin: '1234' }), 400, 'unknown_field', pan],
    ['a CVC sent as a number', () => cardBody(pan, { cvc: 123 }), 400, 'invalid_type', pan],
    ['an unknown top-level field', () => ({ ...cardBody(pan), extra: true }), 400, 'unknown_field', pan],
    ['an unknown field named like a PAN', () => ({ ...cardBody(pan), [pan]: 1 }), 400, 'unknown_field', pan],
    ['a missing card', () => ({}), 400, 'missing_field'],
    ['a missing number', () => ({ card: { exp_month: 12, exp_year: 2031 } }), 400, 'missing_field'],
    ['a missing expiry', () => ({ card: { number: pan } }), 400, 'missing_field', pan],
    ['an unknown format', () => cardBody(pan, {}, { format: 'fpe' }), 400, 'unsupported_format', pan],
    ['a card that is an array', () => ({ card: [pan] }), 400, 'invalid_type', pan],
    ['a body that is an array', () => [cardBody(pan)], 400, 'invalid_type', pan],
    ['a holder name with control characters', () => cardBody(pan, { holder_name: 'A\u0000B' }), 400, 'invalid_field', pan],
    ['a holder name of 101 characters', () => cardBody(pan, { holder_name: 'x'.repeat(101) }), 400, 'invalid_field', pan],
  ];

  // Rest parameters: jest would treat a fifth declared parameter as a done callback on four-element rows.
  it.each(cases)('refuses %s', async (...[, body, status, code, submitted]) => {
    const res = await post(body());
    expectProblem(res, status, code, submitted);
    expect(await countCards(h.db, tenantId)).toBe(0);
  });

  it('refuses malformed JSON with malformed_json and does not echo it', async () => {
    const res = await post(`{"card":{"number":"${pan}",`);
    expectProblem(res, 400, 'malformed_json', pan);
    expect(await countCards(h.db, tenantId)).toBe(0);
  });

  it('refuses a body that is not JSON with unsupported_media_type', async () => {
    const res = await post(`number=${pan}`, 'application/x-www-form-urlencoded');
    expectProblem(res, 415, 'unsupported_media_type', pan);
    const noType = await request(h.app).post('/v1/tokens').set(bearer(merchant)).send(Buffer.from(JSON.stringify(cardBody(pan))));
    expectProblem(noType, 415, 'unsupported_media_type', pan);
    for (const charset of ['utf-7', 'utf-16le', 'iso-8859-1']) {
      expectProblem(await post(JSON.stringify(cardBody(pan)), `application/json; charset=${charset}`), 415, 'unsupported_media_type', pan);
    }
    expect(await countCards(h.db, tenantId)).toBe(0);
  });

  it('takes JSON declared as UTF-8, as most clients send it', async () => {
    const other = await h.tenant(['merchant']);
    const res = await request(h.app)
      .post('/v1/tokens')
      .set(bearer(other.keys.merchant!))
      .set('Content-Type', 'application/json; charset=UTF-8')
      .send(JSON.stringify(cardBody(newPan())));
    expect(res.status).toBe(201);
  });

  it('refuses a body over the size limit with payload_too_large', async () => {
    const res = await post(cardBody(pan, { holder_name: 'x'.repeat(20_000) }));
    expectProblem(res, 413, 'payload_too_large', pan);
    expect(await countCards(h.db, tenantId)).toBe(0);
  });

  it('refuses a malformed Idempotency-Key with invalid_idempotency_key', async () => {
    const res = await request(h.app).post('/v1/tokens').set(bearer(merchant)).set('Idempotency-Key', 'x'.repeat(256)).send(cardBody(newPan()));
    expectProblem(res, 400, 'invalid_idempotency_key');
    expect(await countCards(h.db, tenantId)).toBe(0);
  });

  it('names the offending field by pointer, never by value', async () => {
    const res = await post(cardBody(pan, { exp_month: 13 }));
    expect(res.body.pointer).toBe('/card/exp_month');
  });
});

describe('update rejects bad input', () => {
  it('refuses an expiry month without a year, and an unknown field', async () => {
    const created = await post(cardBody(newPan()));
    expect(created.status).toBe(201);
    const token = created.body.token;
    const patch = (body: unknown) => request(h.app).patch(`/v1/tokens/${token}`).set(bearer(merchant)).send(body as object);
    expectProblem(await patch({ card: { exp_month: 5 } }), 400, 'missing_field');
    expectProblem(await patch({ card: { number: '4111111111111111' } }), 400, 'unknown_field', '4111111111111111');
    expectProblem(await patch({ card: {} }), 400, 'invalid_field');
    expectProblem(await patch({ card: { exp_month: 1, exp_year: 2001 } }), 400, 'card_expired');
    const after = await request(h.app).get(`/v1/tokens/${token}`).set(bearer(merchant));
    expect(after.body.card).toMatchObject({ exp_month: 12, exp_year: 2031 });
  });
});

describe('routing', () => {
  it('answers an unknown route with not_found and a wrong method with method_not_allowed', async () => {
    expectProblem(await request(h.app).get('/nope'), 404, 'not_found');
    const res = await request(h.app).put('/v1/tokens').set(bearer(merchant)).send({});
    expectProblem(res, 405, 'method_not_allowed');
    expect(res.headers.allow).toBe('POST');
  });

  it('lists HEAD beside GET in Allow, since every GET route also answers HEAD', async () => {
    const token = `tok_${'a'.repeat(22)}`;
    const put = await request(h.app).put(`/v1/tokens/${token}`).set(bearer(merchant)).send({});
    expectProblem(put, 405, 'method_not_allowed');
    expect(put.headers.allow).toBe('GET, HEAD, PATCH, DELETE');
    // And HEAD is indeed served there: the GET's answer without its body.
    expect((await request(h.app).head(`/v1/tokens/${token}`).set(bearer(merchant))).status).toBe(404);
  });
});
