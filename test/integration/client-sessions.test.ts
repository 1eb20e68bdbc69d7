// Client sessions for the hosted form: created by a tokenize key, signed (typ, aud), redeemed once, from a listed origin, for tokenize only.
import { createHash } from 'node:crypto';
import express from 'express';
import jose from 'node-jose';
import request from 'supertest';
import { loadConfig, type Config } from '../../src/config';
import { CHECKPOINT_TYP, verifyCheckpointJws } from '../../src/crypto/checkpoint-signer';
import { SESSION_AUD, SESSION_TYP, SessionTokens } from '../../src/crypto/session-signer';
import { CLIENT_SESSION_ROLE, ClientSessions } from '../../src/domain/client-sessions';
import type { Clock } from '../../src/domain/ports';
import { SYSTEM_CONTEXT } from '../../src/domain/ports';
import { authenticate } from '../../src/http/authenticate';
import { allowOnly } from '../../src/http/authorize';
import { clientSessionAuth, clientSessionRoutes, recordSessionToken } from '../../src/http/client-session-routes';
import { problemHandler } from '../../src/http/problem';
import { hostedTokenizeHandler, tokenRoutes } from '../../src/http/tokens';
import { PgClientSessionStore } from '../../src/store/client-session-store';
import { openPostgres } from '../../src/store/db';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';
import { databaseWithRuntimeRole, type RuntimeRoleDatabase } from '../support/runtime-role';

jest.setTimeout(60_000);

const SHOP = 'https://shop.example';
const OTHER = 'https://evil.example';

/** The real clock, moved forward by `skewMs` when a test needs a session to have expired. */
const clock: Clock & { skewMs: number } = { skewMs: 0, now: () => new Date(Date.now() + clock.skewMs) };

interface Parts {
  store: PgClientSessionStore;
  tokens: SessionTokens;
  sessions: ClientSessions;
  app: express.Express;
}

/**
 * The session parts as assembleVault builds them, but on the test clock, behind a small app of their own; local
 * http origins allowed as outside production unless `config` says otherwise.
 */
function buildParts(h: Harness, config: Pick<Config, 'clientSessions'> = { clientSessions: { allowLocalHttpOrigins: true } }): Parts {
  const store = new PgClientSessionStore(h.db);
  const tokens = new SessionTokens((payload, typ) => h.parts.signer.sign(payload, typ), (jws) => h.parts.signer.verify(jws), clock);
  const sessions = new ClientSessions({
    sessions: store,
    tokens,
    tenants: h.parts.tenants,
    audit: h.parts.audit,
    clock,
    allowLocalHttpOrigins: config.clientSessions.allowLocalHttpOrigins,
  });
  const app = express();
  const v1 = express.Router();
  v1.use(authenticate(h.parts.principals, h.parts.audit), express.json());
  v1.use('/client-sessions', clientSessionRoutes(sessions, allowOnly(h.parts.audit)));
  v1.use('/tokens', tokenRoutes(h.parts.vault, allowOnly(h.parts.audit)));
  app.use('/v1', v1);
  app.post('/hosted/tokens', clientSessionAuth(sessions), express.json(), hostedTokenizeHandler(h.parts.vault, recordSessionToken(sessions)));
  // Every other card route behind a session too, which app.ts never mounts: the role alone must refuse them.
  app.use('/hosted/tokens', clientSessionAuth(sessions), express.json(), tokenRoutes(h.parts.vault, allowOnly(h.parts.audit)));
  app.use(problemHandler(h.log));
  return { store, tokens, sessions, app };
}

const sessionAuth = (token: string, parent: string | null = SHOP) => ({
  Authorization: `ClientSession ${token}`,
  ...(parent === null ? {} : { 'X-Parent-Origin': parent }),
});

function decodePart(jws: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[index]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function encodePart(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

let h: Harness;
let p: Parts;
let tenantId: string;
let keys: Record<string, string>;

async function createSession(body: Record<string, unknown> = { allowed_origins: [SHOP] }, key = keys.merchant!) {
  return request(p.app).post('/v1/client-sessions').set(bearer(key)).send(body);
}

async function newSession(body?: Record<string, unknown>): Promise<string> {
  const res = await createSession(body);
  expect(res.status).toBe(201);
  return res.body.session as string;
}

async function events(action: string): Promise<Array<Record<string, unknown>>> {
  await h.parts.audit.flush();
  const rows = await h.db.query<{ event: string }>('SELECT event FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenantId]);
  return rows.map((r) => JSON.parse(r.event) as Record<string, unknown>).filter((e) => e.action === action);
}

beforeAll(async () => {
  h = await buildHarness();
  p = buildParts(h);
  ({ keys } = await h.tenant(['merchant', 'payments', 'auditor']));
  tenantId = (await h.parts.principals.authenticate(keys.merchant!)).tenant.id;
});
afterAll(() => h.close());
afterEach(() => {
  clock.skewMs = 0;
});

describe('POST /v1/client-sessions', () => {
  it('answers 201 with an ES256 JWS typed as a client session, for this tenant and these origins, valid 15 minutes by default', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await createSession({ allowed_origins: [SHOP, 'http://localhost:3000'] });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body).sort()).toEqual(['allowed_origins', 'expires_at', 'session']);
    expect(res.body.allowed_origins).toEqual([SHOP, 'http://localhost:3000']);
    const jws = res.body.session as string;
    expect(decodePart(jws, 0)).toEqual({ alg: 'ES256', typ: SESSION_TYP, kid: expect.any(String) });
    const claims = decodePart(jws, 1);
    expect(claims).toEqual({ aud: SESSION_AUD, jti: expect.any(String), tid: tenantId, origins: [SHOP, 'http://localhost:3000'], iat: expect.any(Number), exp: expect.any(Number) });
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(900);
    expect(new Date(res.body.expires_at).getTime()).toBe(Number(claims.exp) * 1000);

    const row = await p.store.find(String(claims.jti));
    const merchant = await h.parts.principals.authenticate(keys.merchant!);
    expect(row).toMatchObject({ tenantId, createdBy: merchant.apiKeyId, allowedOrigins: [SHOP, 'http://localhost:3000'], usedAt: null, token: null });
    expect(row!.expiresAt.getTime()).toBe(Number(claims.exp) * 1000);
    const [event] = (await events('client_session.create')).filter((e) => (e.details as { session_id?: string }).session_id === claims.jti);
    expect(event).toMatchObject({ outcome: 'success', principal: merchant.apiKeyId, details: { allowed_origins: [SHOP, 'http://localhost:3000'], ttl_seconds: 900 } });
  });

  it('takes a ttl from 60 to 3600 seconds', async () => {
    for (const ttl of [60, 3600]) {
      const claims = decodePart(await newSession({ allowed_origins: [SHOP], ttl_seconds: ttl }), 1);
      expect(Number(claims.exp) - Number(claims.iat)).toBe(ttl);
    }
  });

  it('refuses a key whose role does not grant tokenize with 403, and records the denial', async () => {
    for (const role of ['payments', 'auditor']) {
      const res = await createSession({ allowed_origins: [SHOP] }, keys[role]!);
      expect({ role, status: res.status, code: res.body.code }).toEqual({ role, status: 403, code: 'forbidden' });
    }
    expect(await events('auth.denied')).toContainEqual(expect.objectContaining({ details: { attempted: 'client_session.create', code: 'forbidden' } }));
  });

  it('refuses a request without an API key with 401', async () => {
    const res = await request(p.app).post('/v1/client-sessions').send({ allowed_origins: [SHOP] });
    expect(res.status).toBe(401);
  });

  it.each([
    ['a trailing slash', `${SHOP}/`],
    ['a path', `${SHOP}/checkout`],
    ['a query', `${SHOP}?a=1`],
    ['a fragment', `${SHOP}#x`],
    ['a wildcard', 'https://*.shop.example'],
    ['credentials', 'https://user@shop.example'],
    ['plain http to a public host', 'http://shop.example'],
    ['no scheme', 'shop.example'],
    ['another scheme', 'wss://shop.example'],
    ['uppercase', 'https://Shop.example'],
    ['the default port', `${SHOP}:443`],
    ['a port out of range', `${SHOP}:99999`],
    ['an empty label', 'https://shop..example'],
    ['a Unicode host not in punycode', 'https://bücher.example'],
    ['the opaque origin', 'null'],
    ['a 12-digit run', 'https://shop123456789012.example'],
    ['the empty string', ''],
  ])('refuses an origin with %s, naming it by its pointer', async (_what, origin) => {
    const res = await createSession({ allowed_origins: [SHOP, origin] });
    expect({ status: res.status, code: res.body.code, pointer: res.body.pointer }).toEqual({ status: 400, code: 'invalid_field', pointer: '/allowed_origins/1' });
    // The value is never echoed: an origin is input, and input may be anything.
    if (origin.length > 0) expect(res.text).not.toContain(origin);
  });

  it('accepts https origins with a port or a punycode host, and local http ones', async () => {
    const origins = [`${SHOP}:8443`, 'https://xn--bcher-kva.example', 'https://localhost', 'http://localhost', 'http://127.0.0.1:8080'];
    expect(decodePart(await newSession({ allowed_origins: origins }), 1).origins).toEqual(origins);
  });

  it('refuses local http origins in production, naming each by its pointer, and still takes https ones', async () => {
    const production = buildParts(h, loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://vault@db.internal/vault', KMS_PROVIDER: 'aws', KMS_KEY_ID: 'alias/cardvault' }));
    const create = (origins: string[]) => request(production.app).post('/v1/client-sessions').set(bearer(keys.merchant!)).send({ allowed_origins: origins });
    for (const origin of ['http://localhost', 'http://localhost:3000', 'http://127.0.0.1', 'http://127.0.0.1:8080']) {
      const res = await create([SHOP, origin]);
      expect({ origin, status: res.status, code: res.body.code, pointer: res.body.pointer }).toEqual({ origin, status: 400, code: 'invalid_field', pointer: '/allowed_origins/1' });
      // Nor does the refusal suggest the http origins it would have taken elsewhere.
      expect(res.body.detail).toMatch(/^an origin is https:\/\/host\[:port\] as a browser sends it/);
    }
    const res = await create([SHOP, `${SHOP}:8443`]);
    expect(res.status).toBe(201);
    expect(res.body.allowed_origins).toEqual([SHOP, `${SHOP}:8443`]);
  });

  it.each([
    ['no origins', { allowed_origins: [] }, 'invalid_field', '/allowed_origins'],
    ['eleven origins', { allowed_origins: Array.from({ length: 11 }, (_, i) => `https://s${'abcdefghijk'[i]}.example`) }, 'invalid_field', '/allowed_origins'],
    ['a repeated origin', { allowed_origins: [SHOP, SHOP] }, 'invalid_field', '/allowed_origins/1'],
    ['an origin that is not a string', { allowed_origins: [SHOP, 7] }, 'invalid_type', '/allowed_origins/1'],
    ['a ttl under 60', { allowed_origins: [SHOP], ttl_seconds: 59 }, 'invalid_field', '/ttl_seconds'],
    ['a ttl over 3600', { allowed_origins: [SHOP], ttl_seconds: 3601 }, 'invalid_field', '/ttl_seconds'],
    ['a fractional ttl', { allowed_origins: [SHOP], ttl_seconds: 90.5 }, 'invalid_type', '/ttl_seconds'],
    ['no allowed_origins', {}, 'missing_field', '/allowed_origins'],
    ['an unknown field', { allowed_origins: [SHOP], tenant: 'x' }, 'unknown_field', '/'],
  ])('refuses %s', async (_what, body, code, pointer) => {
    const res = await createSession(body);
    expect({ status: res.status, code: res.body.code, pointer: res.body.pointer }).toEqual({ status: 400, code, pointer });
  });

  it('answers 405 to other methods', async () => {
    const res = await request(p.app).get('/v1/client-sessions').set(bearer(keys.merchant!));
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST');
  });
});

describe('redeeming a session on the hosted tokenize route', () => {
  it('never tells the session holder whether the tenant already held the card, nor what it stored about it', async () => {
    const pan = newPan();
    const stored = await request(p.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan, { exp_year: 2033, cvc: '111' }));
    expect(stored.status).toBe(201);
    const fresh = newPan();
    const answers = [];
    for (const number of [pan, fresh]) {
      // An earlier expiry than the stored one, no CVC, and a key the merchant's backend will use next.
      const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(await newSession())).set('Idempotency-Key', `order-${number.slice(-6)}`).send(cardBody(number, { exp_year: 2030 }));
      answers.push(res);
    }
    const [known, unknown] = answers;
    // Both 201 with the same fields: what was typed and the token, never the stored expiry, CVC, dates or fingerprint.
    for (const [res, number] of [[known!, pan], [unknown!, fresh]] as const) {
      expect(res.status).toBe(201);
      expect(res.body).toEqual({ token: expect.any(String), format: 'bin6_last4', card: { brand: 'visa', last4: number.slice(-4), exp_month: 12, exp_year: 2030 }, cvc_held: false });
      expect(res.headers['idempotency-key']).toBeUndefined();
    }
    // The tenant's one token for the number all the same: its backend sees the card it knows.
    expect(known!.body.token).toBe(stored.body.token);
    // The shopper's Idempotency-Key claimed nothing in the tenant's namespace: the backend's own request with it goes through.
    const backend = await request(p.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', `order-${pan.slice(-6)}`).send(cardBody(newPan()));
    expect(backend.status).toBe(201);
  });

  it('tokenizes one card for the session tenant, records the token, and refuses the same session a second time', async () => {
    const session = await newSession();
    const id = String(decodePart(session, 1).jti);
    const first = await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()));
    expect(first.status).toBe(201);
    const token = first.body.token as string;
    expect(await p.store.find(id)).toMatchObject({ usedAt: expect.any(Date), token });
    // The card is the tenant's, on file like any other.
    expect((await request(p.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).status).toBe(200);

    const second = await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()));
    expect({ status: second.status, code: second.body.code }).toEqual({ status: 401, code: 'session_used' });

    const [tokenized] = (await events('card.tokenize')).filter((e) => e.token === token);
    expect(tokenized).toMatchObject({ outcome: 'success', principal: `client-session:${id}` });
    const redeems = (await events('client_session.redeem')).filter((e) => (e.details as { session_id?: string }).session_id === id);
    expect(redeems.map((e) => [e.outcome, e.details])).toEqual([
      ['success', { session_id: id, parent_origin: SHOP }],
      ['failure', { session_id: id, code: 'session_used' }],
    ]);
  });

  it('lets exactly one of two simultaneous redemptions through', async () => {
    const session = await newSession();
    const results = await Promise.all([0, 1].map(() => p.sessions.redeem(session, SHOP, SYSTEM_CONTEXT).then(() => 'ok', (err) => err.code)));
    expect(results.sort()).toEqual(['ok', 'session_used']);
  });

  it('refuses a session past its expiry by the token (ttl 60, clock moved on) with session_expired', async () => {
    const session = await newSession({ allowed_origins: [SHOP], ttl_seconds: 60 });
    clock.skewMs = 61_000;
    const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()));
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 401, code: 'session_expired' });
  });

  it('refuses a session the database holds as expired with session_expired', async () => {
    const session = await newSession();
    await h.db.query(`UPDATE client_sessions SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' WHERE id = $1`, [
      decodePart(session, 1).jti,
    ]);
    const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()));
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 401, code: 'session_expired' });
  });

  it('refuses another parent origin, or none, with 403 without using the session up', async () => {
    const session = await newSession({ allowed_origins: [SHOP, 'http://localhost:3000'] });
    for (const parent of [OTHER, `${SHOP}/`, 'http://localhost:3001', null]) {
      const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(session, parent)).send(cardBody(newPan()));
      expect({ parent, status: res.status, code: res.body.code }).toEqual({ parent, status: 403, code: 'session_origin_mismatch' });
    }
    const denied = (await events('client_session.redeem')).filter((e) => e.outcome === 'denied');
    expect(denied.length).toBeGreaterThanOrEqual(4);
    // What the caller sent is not recorded: only an origin the merchant listed ever reaches the trail.
    expect(JSON.stringify(denied)).not.toContain('evil.example');
    const ok = await request(p.app).post('/hosted/tokens').set(sessionAuth(session, 'http://localhost:3000')).send(cardBody(newPan()));
    expect(ok.status).toBe(201);
  });

  it('refuses a session whose creating key has been revoked', async () => {
    const { keys: own } = await h.tenant(['merchant']);
    const res = await createSession({ allowed_origins: [SHOP] }, own.merchant!);
    const merchant = await h.parts.principals.authenticate(own.merchant!);
    await h.parts.principals.revokeApiKey(merchant.apiKeyId, 'test');
    const redeem = await request(p.app).post('/hosted/tokens').set(sessionAuth(res.body.session)).send(cardBody(newPan()));
    expect({ status: redeem.status, code: redeem.body.code }).toEqual({ status: 401, code: 'session_invalid' });
  });

  it('refuses a missing, malformed, Bearer or non-canonical credential with 401 session_invalid', async () => {
    const session = await newSession();
    // The same 64 signature bytes spelled with a non-zero padding bit, and with bytes appended: node-jose takes both.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = session.slice(0, -1) + alphabet[alphabet.indexOf(session.at(-1)!) ^ 1];
    const malformed = ['ClientSession', 'ClientSession not-a-jws', `ClientSession ${respelled}`, `ClientSession ${session}x`, `ClientSession ${session}xy`];
    for (const authorization of [undefined, `Bearer ${keys.merchant!}`, ...malformed]) {
      const req = request(p.app).post('/hosted/tokens').set('X-Parent-Origin', SHOP);
      const res = await (authorization === undefined ? req : req.set('Authorization', authorization)).send(cardBody(newPan()));
      expect({ authorization, status: res.status, code: res.body.code }).toEqual({ authorization, status: 401, code: 'session_invalid' });
    }
    expect((await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()))).status).toBe(201);
  });

  it('refuses a tampered token: a payload changed under the old signature, a flipped signature, alg none', async () => {
    const session = await newSession();
    const [header, payload, signature] = session.split('.') as [string, string, string];
    const claims = decodePart(session, 1);
    const { keys: other } = await h.tenant(['merchant']);
    const otherTenant = (await h.parts.principals.authenticate(other.merchant!)).tenant.id;
    const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
    const forgeries = [
      `${header}.${encodePart({ ...claims, tid: otherTenant })}.${signature}`,
      `${header}.${encodePart({ ...claims, origins: [OTHER] })}.${signature}`,
      `${header}.${encodePart({ ...claims, exp: Number(claims.exp) + 3600 })}.${signature}`,
      `${header}.${payload}.${flipped}`,
      `${encodePart({ alg: 'none', typ: SESSION_TYP })}.${payload}.${signature}`,
      `${encodePart({ alg: 'ES256', typ: SESSION_TYP, kid: decodePart(session, 0).kid, jwk: {} })}.${payload}.${signature}`,
    ];
    for (const forged of forgeries) {
      const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(forged, OTHER)).send(cardBody(newPan()));
      expect({ forged, status: res.status, code: res.body.code }).toEqual({ forged, status: 401, code: 'session_invalid' });
    }
    // None of them touched the genuine session.
    expect((await request(p.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()))).status).toBe(201);
  });

  it('refuses a well-formed session signed by a key that is not the vault’s', async () => {
    const key = await jose.JWK.createKey('EC', 'P-256', { alg: 'ES256', use: 'sig' });
    const claims = decodePart(await newSession(), 1);
    const forged = (await jose.JWS.createSign({ format: 'compact', fields: { typ: SESSION_TYP, kid: key.kid } }, key)
      .update(Buffer.from(JSON.stringify({ ...claims, jti: globalThis.crypto.randomUUID() })))
      .final()) as unknown as string;
    await expect(p.tokens.verify(forged)).rejects.toMatchObject({ code: 'session_invalid' });
  });

  it('gives the session principal tokenize and nothing else: read, update, delete and detokenize answer 403', async () => {
    const token = (await request(p.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()))).body.token as string;
    const attempts = [
      (s: string) => request(p.app).get(`/hosted/tokens/${token}`).set(sessionAuth(s)),
      (s: string) => request(p.app).patch(`/hosted/tokens/${token}`).set(sessionAuth(s)).send({ card: { exp_month: 1, exp_year: 2032 } }),
      (s: string) => request(p.app).delete(`/hosted/tokens/${token}`).set(sessionAuth(s)),
      (s: string) => request(p.app).post(`/hosted/tokens/${token}/detokenize`).set(sessionAuth(s)).send({ purpose: 'authorization' }),
    ];
    for (const attempt of attempts) {
      const res = await attempt(await newSession());
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'forbidden' });
      expect(res.text).not.toMatch(/"number"/);
    }
    const redeemed = await p.sessions.redeem(await newSession(), SHOP, SYSTEM_CONTEXT);
    expect(redeemed.principal.role).toBe(CLIENT_SESSION_ROLE);
    expect([...redeemed.principal.role.actions]).toEqual(['tokenize']);
    expect(redeemed.principal.role.detokenize).toBeUndefined();
    await expect(p.sessions.createSession(redeemed.principal, SYSTEM_CONTEXT, { allowedOrigins: [SHOP] })).rejects.toMatchObject({ code: 'forbidden' });
  });
});

describe('typ and aud keep checkpoints and sessions apart', () => {
  it('refuses a real audit checkpoint presented as a session', async () => {
    await newSession();
    await h.parts.audit.flush();
    const checkpoint = await h.parts.checkpointer.checkpointNow();
    const res = await request(p.app).post('/hosted/tokens').set(sessionAuth(checkpoint!.jws)).send(cardBody(newPan()));
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 401, code: 'session_invalid' });
  });

  it('refuses valid session claims signed by the vault under the checkpoint typ', async () => {
    const claims = decodePart(await newSession(), 1);
    const asCheckpoint = await h.parts.signer.sign(Buffer.from(JSON.stringify({ ...claims, jti: globalThis.crypto.randomUUID() })), CHECKPOINT_TYP);
    await expect(p.tokens.verify(asCheckpoint)).rejects.toMatchObject({ code: 'session_invalid' });
  });

  it('refuses the session typ with another audience or extra claims', async () => {
    const claims = decodePart(await newSession(), 1);
    for (const payload of [{ ...claims, aud: 'cardvault:checkpoint' }, { ...claims, aud: [SESSION_AUD] }, { ...claims, scope: 'detokenize' }]) {
      const jws = await h.parts.signer.sign(Buffer.from(JSON.stringify(payload)), SESSION_TYP);
      await expect(p.tokens.verify(jws)).rejects.toMatchObject({ code: 'session_invalid' });
    }
  });

  it('has the checkpoint verifier refuse a session token', async () => {
    const session = await newSession();
    await expect(verifyCheckpointJws(session, await h.parts.signer.jwks())).rejects.toThrow('not a cardvault checkpoint');
  });
});

describe('the app as createApp mounts it', () => {
  it('serves POST /hosted/tokens with a session, records the token, and nothing else under /hosted', async () => {
    const created = await request(h.app).post('/v1/client-sessions').set(bearer(keys.merchant!)).send({ allowed_origins: [SHOP] });
    expect(created.status).toBe(201);
    const session = created.body.session as string;
    const res = await request(h.app).post('/hosted/tokens').set(sessionAuth(session)).send(cardBody(newPan()));
    expect(res.status).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(await p.store.find(String(decodePart(session, 1).jti))).toMatchObject({ token: res.body.token });
    expect((await request(h.app).get('/hosted/tokens').set(sessionAuth(await newSession()))).status).toBe(405);
    expect((await request(h.app).get(`/hosted/tokens/${res.body.token}`).set(sessionAuth(await newSession()))).status).toBe(404);
    expect((await request(h.app).post('/hosted/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()))).body.code).toBe('session_invalid');
  });

  it('takes the card as a JWE to the vault’s published key, as the hosted form will send it', async () => {
    const jwks = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: Array<Record<string, unknown>> };
    const key = await jose.JWK.asKey(jwks.keys.find((k) => k.use === 'enc')!);
    const pan = newPan();
    const session = await newSession();
    // Bound to the session it is sent with, by the SHA-256 of its token, as the form does.
    const fields = { alg: 'RSA-OAEP-256', kid: key.kid, cardvault_session: createHash('sha256').update(session).digest('base64url') };
    const jwe = (await jose.JWE.createEncrypt({ format: 'compact', contentAlg: 'A256GCM', fields }, key)
      .update(Buffer.from(JSON.stringify(cardBody(pan))))
      .final()) as unknown as string;
    const res = await request(h.app).post('/hosted/tokens').set(sessionAuth(session)).set('Content-Type', 'application/jose').send(jwe);
    expect(res.status).toBe(201);
    expect(res.body.card.last4).toBe(pan.slice(-4));
    // Without a session the body is never decrypted.
    const anon = await request(h.app).post('/hosted/tokens').set('Content-Type', 'application/jose').send(jwe);
    expect({ status: anon.status, code: anon.body.code }).toEqual({ status: 401, code: 'session_invalid' });
  });
});

describe('the runtime role', () => {
  let database: RuntimeRoleDatabase;
  beforeAll(async () => {
    database = await databaseWithRuntimeRole('cardvault_sessions');
  });
  afterAll(() => database.drop());

  it('creates, consumes and records sessions, but cannot change their origins or expiry, or delete them', async () => {
    const db = openPostgres({ url: database.url, poolSize: 2 });
    const rh = await buildHarness({ db });
    try {
      const { keys: own } = await rh.tenant(['merchant']);
      const rp = buildParts(rh);
      const created = await request(rp.app).post('/v1/client-sessions').set(bearer(own.merchant!)).send({ allowed_origins: [SHOP] });
      const id = decodePart(created.body.session, 1).jti;
      const res = await request(rp.app).post('/hosted/tokens').set(sessionAuth(created.body.session)).send(cardBody(newPan()));
      expect(res.status).toBe(201);
      await expect(db.query(`UPDATE client_sessions SET allowed_origins = '{https://evil.example}' WHERE id = $1`, [id])).rejects.toMatchObject({ code: '42501' });
      await expect(db.query(`UPDATE client_sessions SET expires_at = now() + interval '1 day' WHERE id = $1`, [id])).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('DELETE FROM client_sessions WHERE id = $1', [id])).rejects.toMatchObject({ code: '42501' });
    } finally {
      await rh.close();
      await db.close();
    }
  });
});
