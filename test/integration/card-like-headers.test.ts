// Header values the vault echoes, logs or audits are dropped when their digits, read across any punctuation,
// could spell a card number: X-Request-Id is replaced, Idempotency-Key is honoured but not echoed, tracestate is
// not kept. Dots, underscores and slashes as much as the spaces and dashes names are checked for.
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

const spell = (pan: string, sep: string) => pan.match(/.{1,4}/g)!.join(sep);
const digitsOf = (text: string) => text.replace(/[^0-9]/g, '');

describe('card-like header values', () => {
  it.each(['.', '_', '..'])('replaces an X-Request-Id with the card number split by %j, in the answer, the log and the trail', async (sep) => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const pan = newPan();
    const id = spell(pan, sep);
    const res = await request(h.app).get(`/v1/tokens/tok_${'a'.repeat(16)}`).set(bearer(keys.merchant!)).set('X-Request-Id', id);
    expect(res.status).toBe(404);
    expect(res.headers['x-request-id']).not.toBe(id);
    expect(digitsOf(res.headers['x-request-id']!)).not.toContain(pan.slice(0, 12));
    expect(digitsOf(JSON.stringify(res.body))).not.toContain(pan.slice(0, 12));
    await h.parts.audit.flush();
    const rows = await h.db.query<{ event: string }>("SELECT event FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = 'card.read'", [tenant.id]);
    expect(rows).toHaveLength(1);
    expect(digitsOf(rows[0]!.event)).not.toContain(pan.slice(0, 12));
  });

  it('keeps an ordinary X-Request-Id with dots and underscores', async () => {
    const { keys } = await h.tenant(['merchant']);
    const res = await request(h.app).get(`/v1/tokens/tok_${'a'.repeat(16)}`).set(bearer(keys.merchant!)).set('X-Request-Id', 'checkout.web_7f3a.2');
    expect(res.headers['x-request-id']).toBe('checkout.web_7f3a.2');
  });

  it.each(['.', '_', '/'])('honours an Idempotency-Key that is a card number split by %j without echoing it', async (sep) => {
    const { keys } = await h.tenant(['merchant']);
    const key = spell(newPan(), sep);
    const body = cardBody(newPan());
    const first = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', key).send(body);
    expect(first.status).toBe(201);
    expect(first.headers['idempotency-key']).toBeUndefined();
    const again = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', key).send(body);
    expect(again.status).toBe(201);
    expect(again.body.token).toBe(first.body.token);
    expect(again.headers['idempotency-key']).toBeUndefined();
  });

  it('echoes an ordinary Idempotency-Key', async () => {
    const { keys } = await h.tenant(['merchant']);
    const res = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', 'order-7f3a.retry_1').send(cardBody(newPan()));
    expect(res.headers['idempotency-key']).toBe('order-7f3a.retry_1');
  });
});
