// Every response carries helmet's headers, whatever answered it: a card route, a refusal, an unknown path, a probe.
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { newPan } from '../support/pans';

let h: Harness;
let keys: Record<string, string>;
beforeAll(async () => {
  h = await buildHarness();
  ({ keys } = await h.tenant(['merchant', 'payments']));
});
afterAll(() => h.close());

const EXPECTED: Record<string, string> = {
  'content-security-policy': "default-src 'none';frame-ancestors 'none'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'DENY',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
};

function expectSecurityHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(EXPECTED)) expect([name, headers[name]]).toEqual([name, value]);
  expect(headers['x-powered-by']).toBeUndefined();
}

it('sets the same security headers on success, refusal, not found, method not allowed and the probes', async () => {
  const card = { number: newPan(), exp_month: 12, exp_year: 2031 };
  const created = await request(h.app).post('/v1/tokens').set('Authorization', `Bearer ${keys.merchant}`).send({ card });
  expect(created.status).toBe(201);
  const responses = [
    created,
    await request(h.app).post(`/v1/tokens/${created.body.token}/detokenize`).set('Authorization', `Bearer ${keys.payments}`).send({ purpose: 'authorization' }),
    await request(h.app).get('/v1/tokens/x').set('Authorization', 'Bearer nope'),
    await request(h.app).get('/no/such/path'),
    await request(h.app).put('/v1/tokens').set('Authorization', `Bearer ${keys.merchant}`).send({}),
    await request(h.app).get('/healthz'),
    await request(h.app).get('/.well-known/jwks.json'),
  ];
  expect(responses.map((r) => r.status)).toEqual([201, 200, 401, 404, 405, 200, 200]);
  for (const res of responses) expectSecurityHeaders(res.headers as Record<string, string>);
  // The card routes also forbid caching; the headers above never replace that.
  expect(responses[1]!.headers['cache-control']).toBe('no-store');
});
