import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
let keys: Record<string, string>;
let otherKeys: Record<string, string>;
let token: string;

beforeAll(async () => {
  h = await buildHarness();
  keys = (await h.tenant()).keys;
  otherKeys = (await h.tenant()).keys;
  const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan(), { holder_name: 'Ada Lovelace' }));
  token = created.body.token;
});
afterAll(() => h.close());

const detokenize = (key: string, purpose = 'authorization', t = token) =>
  request(h.app).post(`/v1/tokens/${t}/detokenize`).set(bearer(key)).send({ purpose });

describe('authentication', () => {
  it.each([
    ['no Authorization header', {}],
    ['a non-Bearer scheme', { Authorization: 'Basic dXNlcjpwYXNz' }],
    ['a malformed key', { Authorization: 'Bearer not-a-key' }],
    ['a well-formed unknown key', { Authorization: `Bearer cvk_${'A'.repeat(43)}` }],
  ])('answers 401 unauthenticated for %s', async (_name, headers) => {
    const res = await request(h.app).get(`/v1/tokens/${token}`).set(headers as Record<string, string>);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('unauthenticated');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it('takes the Bearer scheme in any case, as RFC 9110 §11.1 says a scheme is', async () => {
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
      const res = await request(h.app).get(`/v1/tokens/${token}`).set('Authorization', `${scheme} ${keys.merchant!}`);
      expect({ scheme, status: res.status }).toEqual({ scheme, status: 200 });
    }
  });

  it('answers 401 for a revoked key', async () => {
    const t = await h.tenant(['merchant']);
    const key = t.keys.merchant!;
    expect((await request(h.app).get(`/v1/tokens/${token}`).set(bearer(key))).status).toBe(404);
    const [record] = await h.parts.tenants.listApiKeys(t.tenant.id);
    expect(await h.parts.principals.revokeApiKey(record!.id, 'test')).toBe(true);
    const res = await request(h.app).get(`/v1/tokens/${token}`).set(bearer(key));
    expect(res.status).toBe(401);
  });

  it('stores API keys only as SHA-256 hashes', async () => {
    const rows = await h.db.query<{ text: string }>('SELECT row_to_json(k)::text AS text FROM api_keys k');
    const dump = rows.map((r) => r.text).join('\n');
    for (const key of Object.values(keys)) expect(dump).not.toContain(key.slice(4));
  });
});

describe('authorization by role', () => {
  it('lets merchant tokenize, read, update and delete but not detokenize', async () => {
    const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()));
    expect(created.status).toBe(201);
    const t = created.body.token;
    expect((await request(h.app).get(`/v1/tokens/${t}`).set(bearer(keys.merchant!))).status).toBe(200);
    const patched = await request(h.app).patch(`/v1/tokens/${t}`).set(bearer(keys.merchant!)).send({ card: { exp_month: 1, exp_year: 2033 } });
    expect(patched.status).toBe(200);
    const denied = await detokenize(keys.merchant!, 'authorization', t);
    expect(denied.status).toBe(403);
    expect(denied.body.code).toBe('forbidden');
    expect((await request(h.app).delete(`/v1/tokens/${t}`).set(bearer(keys.merchant!))).status).toBe(204);
  });

  it('lets payments detokenize for authorization and refund, revealing only number and expiry', async () => {
    for (const purpose of ['authorization', 'refund']) {
      const res = await detokenize(keys.payments!, purpose);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body.card).sort()).toEqual(['exp_month', 'exp_year', 'number']);
      expect(res.body.card.holder_name).toBeUndefined();
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('refuses payments a purpose its role does not list with purpose_not_allowed', async () => {
    const res = await detokenize(keys.payments!, 'marketing');
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('purpose_not_allowed');
    expect(res.text).not.toMatch(/[0-9]{12,}/);
  });

  it.each([
    ['payments', 'tokenize', () => request(h.app).post('/v1/tokens').set(bearer(keys.payments!)).send(cardBody(newPan()))],
    ['payments', 'read', () => request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.payments!))],
    ['auditor', 'read', () => request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.auditor!))],
    ['auditor', 'detokenize', () => detokenize(keys.auditor!)],
    ['admin', 'detokenize', () => detokenize(keys.admin!)],
    ['admin', 'tokenize', () => request(h.app).post('/v1/tokens').set(bearer(keys.admin!)).send(cardBody(newPan()))],
    ['admin', 'delete', () => request(h.app).delete(`/v1/tokens/${token}`).set(bearer(keys.admin!))],
  ])('denies %s the %s action with 403 forbidden', async (_role, _action, send) => {
    const res = await send();
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('forbidden');
  });

  it('answers another tenant exactly as it answers an unknown token', async () => {
    const unknown = `${token.slice(0, 6)}000000${token.slice(-4)}`;
    const foreign = await request(h.app).get(`/v1/tokens/${token}`).set(bearer(otherKeys.merchant!));
    const missing = await request(h.app).get(`/v1/tokens/${unknown}`).set(bearer(otherKeys.merchant!));
    expect(foreign.status).toBe(404);
    expect(missing.status).toBe(404);
    const strip = (body: Record<string, unknown>) => ({ ...body, request_id: undefined });
    expect(strip(foreign.body)).toEqual(strip(missing.body));
    expect((await detokenize(otherKeys.payments!)).status).toBe(404);
    expect((await request(h.app).delete(`/v1/tokens/${token}`).set(bearer(otherKeys.merchant!))).status).toBe(404);
    expect((await request(h.app).patch(`/v1/tokens/${token}`).set(bearer(otherKeys.merchant!)).send({ card: { holder_name: 'X' } })).status).toBe(404);
    expect((await detokenize(keys.payments!)).status).toBe(200);
  });

  it('answers 404 for a path token that is not token-shaped', async () => {
    const res = await request(h.app).get('/v1/tokens/..%2F..%2Fetc').set(bearer(keys.merchant!));
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('token_not_found');
  });
});
