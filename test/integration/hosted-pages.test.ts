// The hosted form's page and SDK routes as createApp mounts them: which sessions get a form, unknown SDK files, sdk.json.
import type { Express } from 'express';
import { createHash } from 'node:crypto';
import request from 'supertest';
import { assembleHosted } from '../../src/hosted/dependencies';
import { buildHarness, type Harness } from '../support/harness';
import { bearer } from '../support/http';

jest.setTimeout(60_000);

const SHOP = 'https://shop.example';

let h: Harness;
let app: Express;

beforeAll(async () => {
  h = await buildHarness();
  app = h.appWith({ hostedPage: assembleHosted({ db: h.db, signer: h.parts.signer }) });
});
afterAll(() => h.close());

const formPath = (session: string, origin = SHOP) =>
  `/hosted/card-form?session=${encodeURIComponent(session)}&origin=${encodeURIComponent(origin)}`;

describe('GET /hosted/card-form', () => {
  it('serves no form for a session whose creating key has been revoked: 401 session_invalid, as POST /hosted/tokens would answer', async () => {
    const { keys } = await h.tenant(['merchant']);
    const created = await request(app).post('/v1/client-sessions').set(bearer(keys.merchant!)).send({ allowed_origins: [SHOP] });
    expect(created.status).toBe(201);
    const session = created.body.session as string;
    expect((await request(app).get(formPath(session))).status).toBe(200);

    const merchant = await h.parts.principals.authenticate(keys.merchant!);
    await h.parts.principals.revokeApiKey(merchant.apiKeyId, 'test');
    const page = await request(app).get(formPath(session));
    expect(page.status).toBe(401);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('Card form unavailable');
    expect(page.text).not.toContain('card-number');
    // An error page keeps the global policy: nothing may frame it.
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(page.headers['x-frame-options']).toBe('DENY');
  });

  it('challenges on every 401 page as POST /hosted/tokens does (RFC 9110 §15.5.2), and on no other error page', async () => {
    const json = await request(app).post('/hosted/tokens').send({});
    expect(json.status).toBe(401);
    expect(json.headers['www-authenticate']).toBe('Bearer realm="cardvault"');
    for (const path of ['/hosted/card-form', formPath(''), formPath('not-a-session'), formPath('a.b.c')]) {
      const page = await request(app).get(path);
      expect({ path, status: page.status, challenge: page.headers['www-authenticate'] }).toEqual({ path, status: 401, challenge: json.headers['www-authenticate'] });
    }
    const { keys } = await h.tenant(['merchant']);
    const session = (await request(app).post('/v1/client-sessions').set(bearer(keys.merchant!)).send({ allowed_origins: [SHOP] })).body.session as string;
    const elsewhere = await request(app).get(formPath(session, 'https://other.example'));
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.headers['www-authenticate']).toBeUndefined();
  });
});

describe('GET /hosted/sdk/{file}', () => {
  it('answers a version this vault does not serve with 404 not_found, for GET and HEAD', async () => {
    for (const file of ['9.9.9.js', '1.0.0.min.js', 'sdk.js']) {
      const res = await request(app).get(`/hosted/sdk/${file}`);
      expect({ file, status: res.status, code: res.body.code, type: res.headers['content-type'] }).toEqual({
        file,
        status: 404,
        code: 'not_found',
        type: expect.stringMatching(/^application\/problem\+json/),
      });
      expect(res.headers.allow).toBeUndefined();
      expect((await request(app).head(`/hosted/sdk/${file}`)).status).toBe(404);
    }
    expect((await request(app).get('/hosted/sdk/1.0.0.js')).status).toBe(200);
  });

  it('still answers other methods with 405 and Allow: GET, HEAD, for the served file and any other', async () => {
    for (const file of ['1.0.0.js', '9.9.9.js']) {
      const res = await request(app).post(`/hosted/sdk/${file}`);
      expect({ status: res.status, code: res.body.code, allow: res.headers.allow }).toEqual({ status: 405, code: 'method_not_allowed', allow: 'GET, HEAD' });
    }
  });
});

describe('released SDK versions', () => {
  // The hashes merchants pinned: a released file edited in place would break every page that loads it.
  const RELEASED = {
    '1.0.0': 'sha384-7GqZaKL3JSRpaR2LrLJZ/7fr1udS7CxWO6naGTFeKm5zmvcJ4wQaPNBrqwxScRpU',
    '1.1.0': 'sha384-P/DJUvEIVb4cp3g4+SrADnID+3oVLBJ/nAkmcVukxZYPEArPvU4GS3oiEEJ8LJo8',
  };

  it('serves each one for good with the bytes it was released with; a new one is pinned here as it ships', async () => {
    for (const [version, integrity] of Object.entries(RELEASED)) {
      const res = await request(app).get(`/hosted/sdk/${version}.js`);
      expect(res.status).toBe(200);
      expect(`sha384-${createHash('sha384').update(Buffer.from(res.text, 'utf8')).digest('base64')}`).toBe(integrity);
    }
    const latest = (await request(app).get('/hosted/sdk.json')).body as { version: string; integrity: string };
    expect(RELEASED[latest.version as keyof typeof RELEASED]).toBe(latest.integrity);
  });
});

describe('GET /hosted/sdk.json', () => {
  it('derives nothing from Host or forwarded headers, so a shared cache cannot hand others an attacker’s URL', async () => {
    const res = await request(app)
      .get('/hosted/sdk.json')
      .set('Host', 'evil.example')
      .set('X-Forwarded-Host', 'evil.example')
      .set('X-Forwarded-Proto', 'https');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect(res.text).not.toContain('evil.example');
    expect(Object.keys(res.body).sort()).toEqual(['integrity', 'path', 'version']);
    expect(res.body.path).toBe(`/hosted/sdk/${res.body.version}.js`);
    expect((await request(app).get(res.body.path)).status).toBe(200);
  });
});
