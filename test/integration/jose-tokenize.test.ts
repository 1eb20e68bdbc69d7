// application/jose bodies on real PostgreSQL: the middleware on a minimal app, key rotation across instances,
// and the runtime role's grants on encryption_keys.
import path from 'node:path';
import express, { type RequestHandler } from 'express';
import jose from 'node-jose';
import request from 'supertest';
import { ClientEncryptionKeys } from '../../src/crypto/client-encryption';
import { openLocalKms } from '../../src/crypto/local-kms';
import type { Kms } from '../../src/domain/ports';
import { joseBodies } from '../../src/http/jose-body';
import { problemHandler } from '../../src/http/problem';
import { createLogger } from '../../src/log';
import { openPostgres } from '../../src/store/db';
import { PgEncryptionKeyStore } from '../../src/store/encryption-key-store';
import { withAdmin } from '../support/admin-db';
import { RUN_DIR } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { captureLog, type CapturedLog } from '../support/log-capture';
import { newPan } from '../support/pans';
import { jsonBodies } from '../../src/http/json-body';

jest.setTimeout(60_000);

const LIMIT = 16 * 1024;
let fresh: FreshDatabase;
let kms: Kms;
let now: number;
const clock = { now: () => new Date(now) };
let keys: ClientEncryptionKeys;
let captured: CapturedLog;
let received: Array<{ body: unknown; encrypted: unknown }>;
let app: express.Express;

/** The tenant the minimal app's caller acts for, as `authenticate` would leave it; every JWE here is bound to it. */
const TENANT = 'shop';

function buildApp(): express.Express {
  const api = express.Router();
  api.use((_req, res, next) => {
    res.locals.principal = { tenant: { id: '0b7e6c1a-3f2d-4e8b-9a61-5c4d2e1f0a93', name: TENANT, createdAt: new Date(0) } };
    next();
  });
  api.use('/tokens', joseBodies(keys, LIMIT, 'tenant'));
  api.use(jsonBodies(LIMIT));
  // Records what the route would validate, and answers without echoing it: no PAN in any response here.
  const record: RequestHandler = (req, res) => {
    received.push({ body: req.body, encrypted: res.locals.encryptedBody });
    res.status(204).end();
  };
  api.post('/tokens', record);
  api.post('/tokens/:token/detokenize', record);
  const built = express();
  built.use('/v1', api);
  built.use(problemHandler(createLogger({ level: 'info', destination: captured })));
  return built;
}

async function encrypt(
  jwk: object,
  plaintext: string | Buffer,
  options: { alg?: string; enc?: string; kid?: string; binding?: Record<string, string> } = {},
): Promise<string> {
  // node-jose writes the key's own kid into the header, so a relabelled JWE needs a relabelled key.
  const key = await jose.JWK.asKey(options.kid === undefined ? jwk : { ...jwk, kid: options.kid });
  const fields = { alg: options.alg ?? 'RSA-OAEP-256', kid: key.kid, ...(options.binding ?? { cardvault_tenant: TENANT }) };
  const opts = { format: 'compact' as const, contentAlg: options.enc ?? 'A256GCM', fields };
  return (await jose.JWE.createEncrypt(opts, key).update(Buffer.from(plaintext)).final()) as unknown as string;
}

/** Every PAN this file sends, for the log check at the end. */
const sent: string[] = [];
const freshPan = () => {
  const number = newPan();
  sent.push(number);
  return number;
};

const currentJwk = async () => (await keys.jwks()).keys[0]!;
const cardBody = (number: string) => ({ card: { number, exp_month: 12, exp_year: 2031 } });
const postJose = (jwe: string, type = 'application/jose') => request(app).post('/v1/tokens').set('Content-Type', type).send(jwe);

/** The one refusal, identical for every cause, with neither the PAN nor its last four digits in it. */
async function expectInvalidJwe(jwe: string, pan: string): Promise<void> {
  const res = await postJose(jwe);
  expect(res.status).toBe(400);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toEqual({
    type: 'urn:cardvault:problem:invalid_jwe',
    title: 'The request body is not a JWE this vault can decrypt',
    status: 400,
    code: 'invalid_jwe',
    detail: 'send a compact JWE (RSA-OAEP-256, A256GCM) to an unretired key from /.well-known/jwks.json',
  });
  expect(res.text).not.toContain(pan);
  expect(res.text).not.toContain(pan.slice(-4));
}

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_jwe');
  kms = await openLocalKms({ keyFile: path.join(RUN_DIR, 'kms', `jose-tokenize-${process.pid}.key`) });
  captured = captureLog();
  now = Date.now();
  keys = new ClientEncryptionKeys(kms, new PgEncryptionKeyStore(fresh.db), clock);
  await keys.ensureKey();
  app = buildApp();
});
afterAll(() => fresh.drop());
beforeEach(() => {
  received = [];
});

describe('POST /v1/tokens with Content-Type: application/jose', () => {
  it('decrypts a JWE to the published key and hands the route the same body a JSON request would', async () => {
    const body = cardBody(freshPan());
    const res = await postJose(await encrypt(await currentJwk(), JSON.stringify(body)));
    expect(res.status).toBe(204);
    expect(received).toEqual([{ body, encrypted: true }]);
  });

  it('accepts a charset parameter and a trailing newline', async () => {
    const body = cardBody(freshPan());
    const res = await postJose(`${await encrypt(await currentJwk(), JSON.stringify(body))}\n`, 'application/jose; charset=utf-8');
    expect(res.status).toBe(204);
    expect(received).toEqual([{ body, encrypted: true }]);
  });

  it('leaves JSON bodies, other paths and other methods to the JSON parser', async () => {
    const body = cardBody(freshPan());
    expect((await request(app).post('/v1/tokens').send(body)).status).toBe(204);
    expect(received).toEqual([{ body, encrypted: undefined }]);
    const jwe = await encrypt(await currentJwk(), JSON.stringify({ purpose: 'authorization' }));
    const detokenize = await request(app).post('/v1/tokens/tok_x/detokenize').set('Content-Type', 'application/jose').send(jwe);
    expect(detokenize.body.code).toBe('unsupported_media_type');
    // PUT bodies are JSON-only too (settings, enrollment): a JWE there is refused before routing.
    expect((await request(app).put('/v1/tokens').set('Content-Type', 'application/jose').send(jwe)).body.code).toBe('unsupported_media_type');
    expect(received).toEqual([{ body, encrypted: undefined }]);
  });

  it('refuses a wrong enc (A128GCM) and a wrong alg (RSA1_5, dir), each as invalid_jwe', async () => {
    const jwk = await currentJwk();
    const pan = freshPan();
    const text = JSON.stringify(cardBody(pan));
    await expectInvalidJwe(await encrypt(jwk, text, { enc: 'A128GCM' }), pan);
    const { alg: _alg, ...anyAlg } = jwk;
    await expectInvalidJwe(await encrypt(anyAlg, text, { alg: 'RSA1_5' }), pan);
    const oct = (await jose.JWK.createKey('oct', 256, { kid: String(jwk.kid) })).toJSON(true);
    await expectInvalidJwe(await encrypt(oct, text, { alg: 'dir' }), pan);
    expect(received).toEqual([]);
  });

  it("refuses a JWE bound to another tenant, to none or to a session, before the route sees it, and takes the caller's", async () => {
    const jwk = await currentJwk();
    const pan = freshPan();
    const text = JSON.stringify(cardBody(pan));
    await expectInvalidJwe(await encrypt(jwk, text, { binding: { cardvault_tenant: 'other-shop' } }), pan);
    await expectInvalidJwe(await encrypt(jwk, text, { binding: {} }), pan);
    await expectInvalidJwe(await encrypt(jwk, text, { binding: { cardvault_session: TENANT } }), pan);
    expect(received).toEqual([]);
    expect((await postJose(await encrypt(jwk, text))).status).toBe(204);
    expect(received).toEqual([{ body: cardBody(pan), encrypted: true }]);
  });

  it('refuses an unknown kid', async () => {
    const pan = freshPan();
    await expectInvalidJwe(await encrypt(await currentJwk(), JSON.stringify(cardBody(pan)), { kid: 'not-a-key-of-ours' }), pan);
  });

  it('refuses a flipped byte in any part', async () => {
    const pan = freshPan();
    const parts = (await encrypt(await currentJwk(), JSON.stringify(cardBody(pan)))).split('.');
    for (let p = 0; p < 5; p++) {
      const bytes = Buffer.from(parts[p]!, 'base64url');
      bytes[Math.floor(bytes.length / 2)]! ^= 0x80;
      await expectInvalidJwe(parts.map((part, i) => (i === p ? bytes.toString('base64url') : part)).join('.'), pan);
    }
    expect(received).toEqual([]);
  });

  it('answers malformed_json for a plaintext that is not a JSON object, without quoting it', async () => {
    const pan = freshPan();
    const jwk = await currentJwk();
    for (const plaintext of [`{"card":{"number":"${pan}"`, `"${pan}"`, Buffer.concat([Buffer.from(`{"n":"${pan}`), Buffer.of(0xff), Buffer.from('"}')])]) {
      const res = await postJose(await encrypt(jwk, plaintext));
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'malformed_json' });
      expect(res.text).not.toContain(pan);
    }
  });

  it('answers payload_too_large for a body over the limit, before decrypting it', async () => {
    const decrypt = jest.fn();
    const small = express().post('/', joseBodies({ decrypt }, 1024, 'tenant')).use(problemHandler(createLogger({ level: 'info', destination: captured })));
    const res = await request(small).post('/').set('Content-Type', 'application/jose').send('a'.repeat(1025));
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 413, code: 'payload_too_large' });
    expect(decrypt).not.toHaveBeenCalled();
  });
});

describe('rotation: clients use the newest active key, the vault decrypts with any published, unretired one', () => {
  it('decrypts to a key published early, to both keys during the overlap, and refuses the old key once retired, on every instance', async () => {
    const other = new ClientEncryptionKeys(kms, new PgEncryptionKeyStore(fresh.db), clock);
    const oldJwk = await currentJwk();
    const newKid = await other.createKey(60 * 60 * 1000);
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([oldJwk.kid, newKid]);
    const early = cardBody(freshPan());
    const newJwk = (await keys.jwks()).keys[1]!;
    expect((await postJose(await encrypt(newJwk, JSON.stringify(early)))).status).toBe(204);

    now += 60 * 60 * 1000 + 1;
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldJwk.kid]);
    const pan = freshPan();
    const toOld = await encrypt(oldJwk, JSON.stringify(cardBody(pan)));
    expect((await postJose(toOld)).status).toBe(204);

    await other.retireKey(String(oldJwk.kid));
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    await expectInvalidJwe(toOld, pan);
    expect(received.map((r) => r.encrypted)).toEqual([true, true]);
  });
});

describe('the runtime role on encryption_keys', () => {
  const role = `cardvault_jwe_${process.pid}`;
  beforeAll(async () => {
    await withAdmin(async (c) => {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN IN ROLE cardvault_runtime`);
    });
  });
  afterAll(() => withAdmin((c) => c.query(`DROP ROLE IF EXISTS ${role}`)));

  it('may create, read and retire keys, but not change or delete one', async () => {
    const db = openPostgres({ url: `postgres://${role}@127.0.0.1:5432/${fresh.name}`, poolSize: 2 });
    try {
      const runtime = new ClientEncryptionKeys(kms, new PgEncryptionKeyStore(db), clock);
      const kid = await runtime.createKey();
      const jwk = (await runtime.jwks()).keys.find((k) => k.kid === kid)!;
      const jwe = await encrypt(jwk, JSON.stringify(cardBody(freshPan())));
      expect((await runtime.decrypt(jwe, { param: 'cardvault_tenant', value: TENANT })).length).toBeGreaterThan(0);
      await runtime.retireKey(kid);
      await expect(db.query("UPDATE encryption_keys SET public_jwk = '{}' WHERE kid = $1", [kid])).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('UPDATE encryption_keys SET activates_at = now() WHERE kid = $1', [kid])).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('DELETE FROM encryption_keys WHERE kid = $1', [kid])).rejects.toMatchObject({ code: '42501' });
    } finally {
      await db.close();
    }
  });
});

it('logged no PAN this file sent, and kept every private key out of the table in the clear', async () => {
  expect(sent.length).toBeGreaterThanOrEqual(10);
  const log = captured.lines.join('\n');
  expect(sent.filter((number) => log.includes(number))).toEqual([]);
  const rows = await fresh.db.query<{ public_jwk: Record<string, unknown> }>('SELECT public_jwk FROM encryption_keys');
  for (const row of rows) expect(Object.keys(row.public_jwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
});
