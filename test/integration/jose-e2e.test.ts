// JWE card bodies through the whole app: each is bound to the tenant (POST /v1/tokens) or the client session
// (POST /hosted/tokens) named in its protected header, and is refused, vaulting nothing, anywhere else.
import { createHash } from 'node:crypto';
import jose from 'node-jose';
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody, countCards } from '../support/http';
import { newPan } from '../support/pans';

const SHOP = 'https://shop.example';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

/** A compact JWE of the card body to the first enc key of /.well-known/jwks.json, with these header parameters. */
async function encryptCard(pan: string, binding: Record<string, string>): Promise<string> {
  const jwks = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: Array<Record<string, unknown>> };
  const key = await jose.JWK.asKey(jwks.keys.find((k) => k.use === 'enc')!);
  const fields = { alg: 'RSA-OAEP-256', kid: key.kid, ...binding };
  return (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields }, key)
    .update(Buffer.from(JSON.stringify(cardBody(pan))))
    .final()) as unknown as string;
}

const postJose = (key: string, jwe: string) => request(h.app).post('/v1/tokens').set(bearer(key)).set('Content-Type', 'application/jose').send(jwe);

async function newSession(key: string): Promise<string> {
  const res = await request(h.app).post('/v1/client-sessions').set(bearer(key)).send({ allowed_origins: [SHOP] });
  expect(res.status).toBe(201);
  return res.body.session as string;
}

const redeemJose = (session: string, jwe: string) =>
  request(h.app)
    .post('/hosted/tokens')
    .set({ Authorization: `ClientSession ${session}`, 'X-Parent-Origin': SHOP, 'Content-Type': 'application/jose' })
    .send(jwe);

/** What the hosted form puts in `cardvault_session`: SHA-256 of the session token, base64url. */
const sessionDigest = (session: string) => createHash('sha256').update(session, 'utf8').digest('base64url');

/** The tenant's card.tokenize events, once the audit trail has written what it holds. */
async function tokenizeEvents(tenantId: string): Promise<number> {
  await h.parts.audit.flush();
  const rows = await h.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = 'card.tokenize'",
    [tenantId],
  );
  return rows[0]!.n;
}

function expectInvalidJwe(res: request.Response, pan: string): void {
  expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'invalid_jwe' });
  expect(res.body.detail).toBe('send a compact JWE (RSA-OAEP-256, A256GCM) to an unretired key from /.well-known/jwks.json');
  expect(res.text).not.toContain(pan);
  expect(res.text).not.toContain(pan.slice(-4));
}

it('tokenizes a card sent as a JWE to the first enc key of /.well-known/jwks.json', async () => {
  const { tenant, keys } = await h.tenant(['merchant', 'payments']);
  const jwks = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: Array<Record<string, unknown>> };
  expect(jwks.keys[0]).toMatchObject({ use: 'enc', alg: 'RSA-OAEP-256', kty: 'RSA' });
  expect(jwks.keys.some((k) => k.use === 'sig')).toBe(true);
  const pan = newPan();
  const jwe = await encryptCard(pan, { cardvault_tenant: tenant.name });
  const res = await postJose(keys.merchant!, jwe);
  expect(res.status).toBe(201);
  expect(res.body.card.last4).toBe(pan.slice(-4));
  const bad = await postJose(keys.merchant!, jwe.slice(0, -2) + 'AA');
  expect(bad.body.code).toBe('invalid_jwe');
  const anon = await request(h.app).post('/v1/tokens').set('Content-Type', 'application/jose').send(jwe);
  expect(anon.status).toBe(401);
  const det = await request(h.app).post(`/v1/tokens/${res.body.token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
  expect(det.body.card.number).toBe(pan);
});

describe('a JWE is bound to the tenant its header names', () => {
  it("refuses a JWE made for tenant A under tenant B's key with 400 invalid_jwe, vaulting nothing, and takes it under A's", async () => {
    const a = await h.tenant(['merchant']);
    const b = await h.tenant(['merchant', 'payments']);
    const pan = newPan();
    const forA = await encryptCard(pan, { cardvault_tenant: a.tenant.name });
    // Replayed as many times as a thief likes: every attempt under B is refused the same way.
    for (let i = 0; i < 2; i++) expectInvalidJwe(await postJose(b.keys.merchant!, forA), pan);
    expect(await countCards(h.db, b.tenant.id)).toBe(0);
    expect(await countCards(h.db, a.tenant.id)).toBe(0);
    expect(await tokenizeEvents(b.tenant.id)).toBe(0);

    const underA = await postJose(a.keys.merchant!, forA);
    expect(underA.status).toBe(201);
    expect(await countCards(h.db, a.tenant.id)).toBe(1);
    expect(await tokenizeEvents(a.tenant.id)).toBe(1);
    // B's payments key cannot reach the card it was never given.
    const det = await request(h.app).post(`/v1/tokens/${underA.body.token}/detokenize`).set(bearer(b.keys.payments!)).send({ purpose: 'authorization' });
    expect(det.body.code).toBe('token_not_found');
  });

  it('refuses a JWE bound to no tenant, to a tenant by its id, or to a client session, and takes the same card bound by name', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const pan = newPan();
    expectInvalidJwe(await postJose(keys.merchant!, await encryptCard(pan, {})), pan);
    expectInvalidJwe(await postJose(keys.merchant!, await encryptCard(pan, { cardvault_tenant: tenant.id })), pan);
    expectInvalidJwe(await postJose(keys.merchant!, await encryptCard(pan, { cardvault_session: sessionDigest(await newSession(keys.merchant!)) })), pan);
    expect(await countCards(h.db, tenant.id)).toBe(0);
    expect((await postJose(keys.merchant!, await encryptCard(pan, { cardvault_tenant: tenant.name }))).status).toBe(201);
  });
});

describe('a hosted-form JWE is bound to the client session its header names', () => {
  it('refuses a JWE made for session S1 when redeemed with session S2, vaulting nothing, and takes it with S1', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const [s1, s2] = [await newSession(keys.merchant!), await newSession(keys.merchant!)];
    const pan = newPan();
    const forS1 = await encryptCard(pan, { cardvault_session: sessionDigest(s1) });
    expectInvalidJwe(await redeemJose(s2, forS1), pan);
    expect(await countCards(h.db, tenant.id)).toBe(0);
    const redeemed = await redeemJose(s1, forS1);
    expect(redeemed.status).toBe(201);
    expect(redeemed.body.card.last4).toBe(pan.slice(-4));
    // Single use: the JWE cannot be redeemed again, with its session or any other.
    expect((await redeemJose(s1, forS1)).body.code).toBe('session_used');
  });

  it("refuses a hosted JWE bound to no session, or to the session's tenant, and one bound to a session at POST /v1/tokens", async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const pan = newPan();
    expectInvalidJwe(await redeemJose(await newSession(keys.merchant!), await encryptCard(pan, {})), pan);
    expectInvalidJwe(await redeemJose(await newSession(keys.merchant!), await encryptCard(pan, { cardvault_tenant: tenant.name })), pan);
    const session = await newSession(keys.merchant!);
    const forSession = await encryptCard(pan, { cardvault_session: sessionDigest(session) });
    // Taken from the form on its way to the vault, it is no good with the merchant's own API key.
    expectInvalidJwe(await postJose(keys.merchant!, forSession), pan);
    expect(await countCards(h.db, tenant.id)).toBe(0);
    expect((await redeemJose(session, forSession)).status).toBe(201);
  });
});
