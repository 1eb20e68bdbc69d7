import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody, countCards } from '../support/http';
import { newPan } from '../support/pans';
import { luhnValid } from '../../src/domain/pan';
import { SYSTEM_CONTEXT } from '../../src/domain/ports';

let h: Harness;
let keys: Record<string, string>;
let tenantId: string;

beforeAll(async () => {
  h = await buildHarness();
  const t = await h.tenant();
  keys = t.keys;
  tenantId = t.tenant.id;
});
afterAll(() => h.close());

const tokenize = (body: unknown, key = keys.merchant!, idem?: string) => {
  const req = request(h.app).post('/v1/tokens').set(bearer(key));
  if (idem) req.set('Idempotency-Key', idem);
  return req.send(body as object);
};
const detokenize = (token: string) => request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });

describe('token formats', () => {
  it('issues last4 tokens: same length, digits only, last 4 kept, failing Luhn', async () => {
    const pan = newPan('555555', 16);
    const res = await tokenize(cardBody(pan, {}, { format: 'last4' }));
    expect(res.status).toBe(201);
    expect(res.body.format).toBe('last4');
    expect(res.body.token).toMatch(/^[0-9]{16}$/);
    expect(res.body.token.slice(-4)).toBe(pan.slice(-4));
    expect(luhnValid(res.body.token)).toBe(false);
    expect((await detokenize(res.body.token)).body.card.number).toBe(pan);
  });

  it('issues opaque tokens that are not numeric', async () => {
    const pan = newPan('378282', 15);
    const res = await tokenize(cardBody(pan, {}, { format: 'opaque' }));
    expect(res.status).toBe(201);
    expect(res.body.token).toMatch(/^tok_[A-Za-z0-9_-]+$/);
    expect((await detokenize(res.body.token)).body.card.number).toBe(pan);
  });
});

describe('deduplication', () => {
  it('keeps the later expiry when a vaulted PAN comes back with a newer one, never the earlier', async () => {
    const pan = newPan();
    const first = await tokenize(cardBody(pan, { exp_month: 6, exp_year: 2030 }));
    const later = await tokenize(cardBody(pan, { exp_month: 9, exp_year: 2032 }));
    expect(later.status).toBe(200);
    expect(later.body.token).toBe(first.body.token);
    expect(later.body.card).toMatchObject({ exp_month: 9, exp_year: 2032 });
    const earlier = await tokenize(cardBody(pan, { exp_month: 1, exp_year: 2031 }));
    expect(earlier.body.card).toMatchObject({ exp_month: 9, exp_year: 2032 });
  });

  it('gives another tenant an unrelated token and fingerprint for the same PAN', async () => {
    const pan = newPan();
    const other = await h.tenant(['merchant']);
    const a = await tokenize(cardBody(pan));
    const b = await tokenize(cardBody(pan), other.keys.merchant);
    expect(b.status).toBe(201);
    expect(b.body.token).not.toBe(a.body.token);
    expect(b.body.fingerprint).not.toBe(a.body.fingerprint);
  });
});

describe('idempotency', () => {
  it('replays the same response for a retry with the same key and body', async () => {
    const body = cardBody(newPan());
    const first = await tokenize(body, undefined, 'order-1-attempt');
    const retry = await tokenize(body, undefined, 'order-1-attempt');
    expect(first.status).toBe(201);
    expect(retry.status).toBe(201);
    expect(retry.body).toEqual(first.body);
    expect(retry.headers['idempotency-key']).toBe('order-1-attempt');
  });

  it('refuses the same key with a different body with idempotency_key_reused and writes nothing', async () => {
    await tokenize(cardBody(newPan()), undefined, 'order-2');
    const before = await countCards(h.db, tenantId);
    const res = await tokenize(cardBody(newPan()), undefined, 'order-2');
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('idempotency_key_reused');
    expect(await countCards(h.db, tenantId)).toBe(before);
  });

  it('never duplicates under concurrent retries with one key', async () => {
    const body = cardBody(newPan());
    const before = await countCards(h.db, tenantId);
    const results = await Promise.all(Array.from({ length: 8 }, () => tokenize(body, undefined, 'order-3')));
    expect(new Set(results.map((r) => r.body.token)).size).toBe(1);
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect(await countCards(h.db, tenantId)).toBe(before + 1);
  });

  it('keeps the key for at least 24 hours', async () => {
    await tokenize(cardBody(newPan()), undefined, 'order-4');
    const rows = await h.idempotencyRecords(tenantId, 'order-4');
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.hours)).toBeGreaterThanOrEqual(24);
  });

  it('leaves no idempotency record behind when the request fails', async () => {
    const res = await tokenize(cardBody(newPan(), { exp_year: 2001 }), undefined, 'order-5');
    expect(res.body.code).toBe('card_expired');
    expect(await h.idempotencyRecords(tenantId, 'order-5')).toHaveLength(0);
  });
});

describe('update and delete', () => {
  it('updates expiry and holder name, and reveals the holder name only to a role that may see it', async () => {
    const pan = newPan();
    const created = await tokenize(cardBody(pan, { holder_name: 'Grace Hopper' }));
    const token = created.body.token;
    const patched = await request(h.app).patch(`/v1/tokens/${token}`).set(bearer(keys.merchant!)).send({ card: { exp_month: 3, exp_year: 2034, holder_name: 'Grace B. Hopper' } });
    expect(patched.status).toBe(200);
    expect(patched.body.card).toMatchObject({ exp_month: 3, exp_year: 2034 });
    const read = await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!));
    expect(read.body).toMatchObject({ token, status: 'active', card: { exp_month: 3, exp_year: 2034, last4: pan.slice(-4) } });
    expect(read.text).not.toContain(pan);
    expect(read.text).not.toContain('Grace');
    const revealed = await detokenize(token);
    expect(revealed.body.card).toEqual({ number: pan, exp_month: 3, exp_year: 2034 });
    const sealed = await h.parts.vault.detokenize(
      { tenant: (await h.parts.tenants.findTenantById(tenantId))!, apiKeyId: 'test', role: { name: 'test', description: '', actions: new Set(['detokenize']), detokenize: { purposes: new Set(['support']), reveal: ['holder_name'] } } },
      SYSTEM_CONTEXT,
      token,
      'support',
    );
    expect(sealed.card).toEqual({ holder_name: 'Grace B. Hopper' });
  });

  it('bumps the version for a new expiry only: the same expiry or a holder name alone leaves pending updater answers valid', async () => {
    const pan = newPan();
    const token = (await tokenize(cardBody(pan))).body.token;
    const patch = (card: object) => request(h.app).patch(`/v1/tokens/${token}`).set(bearer(keys.merchant!)).send({ card });
    expect((await patch({ holder_name: 'Grace Hopper' })).body.version).toBe(1);
    expect((await patch({ exp_month: 12, exp_year: 2031 })).body.version).toBe(1);
    expect((await patch({ exp_month: 1, exp_year: 2032 })).body.version).toBe(2);
    // Tokenizing the number again moves the expiry only forward, and only then is it a new version.
    expect((await tokenize(cardBody(pan, { exp_month: 12, exp_year: 2031 }))).body.version).toBe(2);
    expect((await tokenize(cardBody(pan, { exp_month: 2, exp_year: 2032 }))).body.version).toBe(3);
  });

  it('destroys the ciphertext on delete; later reads and detokenize answer 404', async () => {
    const pan = newPan();
    const token = (await tokenize(cardBody(pan))).body.token;
    expect((await request(h.app).delete(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).status).toBe(204);
    const rows = await h.db.query<{ ciphertext: Buffer | null; fingerprint: string | null; status: string }>(
      'SELECT ciphertext, fingerprint, status FROM cards WHERE tenant_id = $1 AND token = $2',
      [tenantId, token],
    );
    expect(rows[0]).toEqual({ ciphertext: null, fingerprint: null, status: 'deleted' });
    expect((await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).status).toBe(404);
    expect((await detokenize(token)).status).toBe(404);
    expect((await request(h.app).delete(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).status).toBe(404);
    const again = await tokenize(cardBody(pan));
    expect(again.status).toBe(201);
    expect(again.body.token).not.toBe(token);
  });
});
