import jose from 'node-jose';
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

it('tokenizes a card sent as a JWE to the first enc key of /.well-known/jwks.json', async () => {
  const { keys } = await h.tenant(['merchant', 'payments']);
  const jwks = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: Array<Record<string, unknown>> };
  expect(jwks.keys[0]).toMatchObject({ use: 'enc', alg: 'RSA-OAEP-256', kty: 'RSA' });
  expect(jwks.keys.some((k) => k.use === 'sig')).toBe(true);
  const key = await jose.JWK.asKey(jwks.keys[0]!);
  const pan = newPan();
  const jwe = (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields: { alg: 'RSA-OAEP-256', kid: key.kid } }, key)
    .update(Buffer.from(JSON.stringify(cardBody(pan))))
    .final()) as unknown as string;
  const res = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Content-Type', 'application/jose').send(jwe);
  expect(res.status).toBe(201);
  expect(res.body.card.last4).toBe(pan.slice(-4));
  const bad = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Content-Type', 'application/jose').send(jwe.slice(0, -2) + 'AA');
  expect(bad.body.code).toBe('invalid_jwe');
  const anon = await request(h.app).post('/v1/tokens').set('Content-Type', 'application/jose').send(jwe);
  expect(anon.status).toBe(401);
  const det = await request(h.app).post(`/v1/tokens/${res.body.token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
  expect(det.body.card.number).toBe(pan);
});
