// Client-encryption keys without a database: sealed storage, JWKS, rotation, and one error for every JWE refused.
import { createHash } from 'node:crypto';
import path from 'node:path';
import jose from 'node-jose';
import {
  ClientEncryptionKeys,
  MAX_PLAINTEXT_BYTES,
  sessionBinding,
  tenantBinding,
  type EncryptionKeyStore,
  type JweBinding,
  type StoredEncryptionKey,
} from '../../src/crypto/client-encryption';
import { openLocalKms } from '../../src/crypto/local-kms';
import type { AuditInput, Kms } from '../../src/domain/ports';
import { VaultError } from '../../src/errors';
import { RUN_DIR } from '../support/env';
import { newPan } from '../support/pans';

jest.setTimeout(60_000);

let kms: Kms;
let now: number;
const clock = { now: () => new Date(now) };

function memoryStore(): EncryptionKeyStore & { rows: StoredEncryptionKey[] } {
  const rows: StoredEncryptionKey[] = [];
  return {
    rows,
    insertEncryptionKey: async (k) => void rows.push({ ...k, createdAt: new Date(now), retiresAt: null }),
    listEncryptionKeys: async () => rows.map((r) => ({ ...r })),
    async retireEncryptionKey(kid, at) {
      const row = rows.find((r) => r.kid === kid && r.retiresAt === null);
      if (row) row.retiresAt = at;
      return row !== undefined;
    },
  };
}

/** Counts unwraps, so a test can see the private key is opened once and then cached. */
function countingKms(inner: Kms): Kms & { unwraps: number } {
  const counted = { ...inner, unwraps: 0 };
  counted.decryptDataKey = (wrapped, context) => {
    counted.unwraps += 1;
    return inner.decryptDataKey(wrapped, context);
  };
  return counted;
}

/** The binding every JWE here carries unless a test says otherwise, and the request it is decrypted for. */
const SHOP = { cardvault_tenant: 'shop' };
const FOR_SHOP: JweBinding = { param: 'cardvault_tenant', value: 'shop' };

async function encrypt(
  jwk: object,
  plaintext: string | Buffer,
  options: { alg?: string; enc?: string; kid?: string; fields?: Record<string, unknown>; binding?: Record<string, unknown>; zip?: boolean } = {},
): Promise<string> {
  // node-jose writes the key's own kid into the header, so a relabelled JWE needs a relabelled key.
  const key = await jose.JWK.asKey(options.kid === undefined ? jwk : { ...jwk, kid: options.kid });
  const fields = { alg: options.alg ?? 'RSA-OAEP-256', kid: key.kid, ...(options.binding ?? SHOP), ...options.fields };
  const opts = { format: 'compact' as const, contentAlg: options.enc ?? 'A256GCM', fields, ...(options.zip ? { zip: true } : {}) };
  return (await jose.JWE.createEncrypt(opts, key).update(Buffer.from(plaintext)).final()) as unknown as string;
}

/** A public JWK with `alg` removed, so node-jose will use it for another algorithm than the vault's. */
const anyAlg = (jwk: Record<string, unknown>) => Object.fromEntries(Object.entries(jwk).filter(([name]) => name !== 'alg'));

const cardJson = () => JSON.stringify({ card: { number: newPan(), exp_month: 12, exp_year: 2031 } });

async function refusal(keys: ClientEncryptionKeys, jwe: string, binding: JweBinding): Promise<VaultError> {
  const err = await keys.decrypt(jwe, binding).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VaultError);
  return err as VaultError;
}

/** Every refusal is the same error, word for word, and carries nothing of the JWE or its plaintext. */
async function expectRefused(keys: ClientEncryptionKeys, jwe: string, plaintext?: string, binding = FOR_SHOP): Promise<void> {
  const err = await refusal(keys, jwe, binding);
  expect({ code: err.code, status: err.status, cause: err.cause }).toEqual({ code: 'invalid_jwe', status: 400, cause: undefined });
  expect(err.detail).toBe(INVALID_DETAIL);
  if (plaintext) expect(JSON.stringify({ m: err.message, d: err.detail })).not.toContain(JSON.parse(plaintext).card.number);
}
const INVALID_DETAIL = 'send a compact JWE (RSA-OAEP-256, A256GCM) to an unretired key from /.well-known/jwks.json';

beforeAll(async () => {
  kms = await openLocalKms({ keyFile: path.join(RUN_DIR, 'kms', `client-encryption-${process.pid}.key`) });
});
beforeEach(() => {
  now = Date.parse('2030-01-01T00:00:00Z');
});

describe('keys', () => {
  it('creates an RSA-3072 RSA-OAEP-256 key, publishes only its public half with use and alg, and audits it', async () => {
    const store = memoryStore();
    const recorded: AuditInput[] = [];
    const keys = new ClientEncryptionKeys(kms, store, clock, { record: async (e) => void recorded.push(e) });
    const kid = await keys.createKey();
    const { keys: published } = await keys.jwks();
    expect(published).toHaveLength(1);
    expect(Object.keys(published[0]!).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(published[0]).toMatchObject({ kty: 'RSA', kid, use: 'enc', alg: 'RSA-OAEP-256' });
    expect(Buffer.from(String(published[0]!.n), 'base64url').length * 8).toBe(3072);
    expect(store.rows[0]!.alg).toBe('RSA-OAEP-256');
    expect(recorded).toEqual([
      expect.objectContaining({ tenantId: null, principal: 'system', action: 'key.encryption.create', details: { kid, alg: 'RSA-OAEP-256', activates_after_ms: 0 } }),
    ]);
  });

  it('stores the private key only sealed, under a data key that opens for the client-encryption purpose alone', async () => {
    const store = memoryStore();
    await new ClientEncryptionKeys(kms, store, clock).createKey();
    const row = store.rows[0]!;
    expect(JSON.stringify(row.publicJwk)).not.toMatch(/"(d|p|q|dp|dq|qi)"/);
    expect(row.sealed.ciphertext.toString('utf8')).not.toContain('"d"');
    await expect(kms.decryptDataKey(row.wrappedKey, { tenantId: 'system', purpose: 'signing' })).rejects.toThrow();
    await expect(kms.decryptDataKey(row.wrappedKey, { tenantId: 'system', purpose: 'client-encryption' as never })).resolves.toHaveLength(32);
  });

  it('ensureKey creates a key only when no unretired key exists', async () => {
    const store = memoryStore();
    const keys = new ClientEncryptionKeys(kms, store, clock);
    await keys.ensureKey();
    await keys.ensureKey();
    expect(store.rows).toHaveLength(1);
    await keys.retireKey(store.rows[0]!.kid);
    await keys.ensureKey();
    expect(store.rows).toHaveLength(2);
  });

  it('refuses to retire an unknown or already retired kid with not_found', async () => {
    const keys = new ClientEncryptionKeys(kms, memoryStore(), clock);
    const kid = await keys.createKey();
    await keys.retireKey(kid);
    await expect(keys.retireKey(kid)).rejects.toMatchObject({ code: 'not_found' });
    await expect(keys.retireKey('no-such-kid')).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('decrypt', () => {
  let store: ReturnType<typeof memoryStore>;
  let counting: ReturnType<typeof countingKms>;
  let keys: ClientEncryptionKeys;
  let jwk: Record<string, unknown>;

  beforeAll(async () => {
    store = memoryStore();
    counting = countingKms(kms);
    keys = new ClientEncryptionKeys(counting, store, clock);
    await keys.createKey();
    jwk = (await keys.jwks()).keys[0]!;
  });

  it('round-trips a card body encrypted to the published key, unwrapping the private key once', async () => {
    const before = counting.unwraps;
    for (let i = 0; i < 3; i++) {
      const body = cardJson();
      expect((await keys.decrypt(await encrypt(jwk, body), FOR_SHOP)).toString('utf8')).toBe(body);
    }
    expect(counting.unwraps - before).toBeLessThanOrEqual(1);
  });

  it('accepts typ and cty, and a payload of exactly the limit', async () => {
    const body = Buffer.alloc(MAX_PLAINTEXT_BYTES, 0x20);
    const jwe = await encrypt(jwk, body, { fields: { typ: 'JWE', cty: 'json' } });
    expect((await keys.decrypt(jwe, FOR_SHOP)).equals(body)).toBe(true);
  });

  it('refuses every other enc, even to the right key: A128GCM, A192GCM, A256CBC-HS512', async () => {
    for (const enc of ['A128GCM', 'A192GCM', 'A256CBC-HS512']) {
      const body = cardJson();
      await expectRefused(keys, await encrypt(jwk, body, { enc }), body);
    }
  });

  it('refuses every other alg, even genuinely encrypted to the right key: RSA1_5, RSA-OAEP (SHA-1)', async () => {
    for (const alg of ['RSA1_5', 'RSA-OAEP']) {
      const body = cardJson();
      await expectRefused(keys, await encrypt(anyAlg(jwk), body, { alg }), body);
    }
  });

  it('refuses dir and ECDH-ES+A256KW under the right kid', async () => {
    const kid = String(jwk.kid);
    const oct = (await jose.JWK.createKey('oct', 256, { kid })).toJSON(true);
    await expectRefused(keys, await encrypt(oct, cardJson(), { alg: 'dir', kid }));
    const ec = (await jose.JWK.createKey('EC', 'P-256', { kid })).toJSON();
    await expectRefused(keys, await encrypt(ec, cardJson(), { alg: 'ECDH-ES+A256KW', kid }));
  });

  it.each([
    ['zip', {}],
    ['crit', { crit: ['exp'], exp: 1 }],
    ['jku', { jku: 'https://attacker.example/jwks.json' }],
    ['jwk', { jwk: { kty: 'RSA', e: 'AQAB', n: 'AQAB' } }],
    ['x5u', { x5u: 'https://attacker.example/cert.pem' }],
    ['x5c', { x5c: ['MIIB'] }],
    ['epk', { epk: { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' } }],
    ['an unregistered parameter', { foo: 'bar' }],
  ])('refuses a header with %s', async (name, fields) => {
    const jwe = await encrypt(jwk, cardJson(), name === 'zip' ? { zip: true } : { fields });
    await expectRefused(keys, jwe);
  });

  it('refuses an unknown kid: a JWE to another vault’s key, and one relabelled with our kid', async () => {
    const other = new ClientEncryptionKeys(kms, memoryStore(), clock);
    await other.createKey();
    const otherJwk = (await other.jwks()).keys[0]!;
    await expectRefused(keys, await encrypt(otherJwk, cardJson()));
    await expectRefused(keys, await encrypt(otherJwk, cardJson(), { kid: String(jwk.kid) }));
    await expectRefused(keys, await encrypt(jwk, cardJson(), { kid: 'unknown-kid' }));
  });

  it('refuses anything but compact serialization with exactly five parts', async () => {
    const jwe = await encrypt(jwk, cardJson());
    const parts = jwe.split('.');
    const [protectedHeader, encryptedKey, iv, ciphertext, tag] = parts;
    const general = JSON.stringify({ protected: protectedHeader, encrypted_key: encryptedKey, iv, ciphertext, tag });
    for (const bad of [general, parts.slice(0, 4).join('.'), `${jwe}.`, `${jwe}.${tag}`, '', ' ', `${jwe} `, 'a.b.c.d.e']) {
      await expectRefused(keys, bad);
    }
  });

  it('refuses a payload over 8 KiB before decrypting it', async () => {
    // A cold instance over the same keys: the shared one has its private key cached by the tests above, so its
    // unwrap count could not tell a refusal before decrypting from one after.
    const cold = countingKms(kms);
    await expectRefused(new ClientEncryptionKeys(cold, store, clock), await encrypt(jwk, Buffer.alloc(MAX_PLAINTEXT_BYTES + 1, 0x20)));
    expect(cold.unwraps).toBe(0);
  });

  it('refuses a flipped bit in every byte position of every part', async () => {
    const body = cardJson();
    const jwe = await encrypt(jwk, body, { fields: { cty: 'json' } });
    const parts = jwe.split('.');
    for (let p = 0; p < 5; p++) {
      const bytes = Buffer.from(parts[p]!, 'base64url');
      for (const at of [0, Math.floor(bytes.length / 2), bytes.length - 1]) {
        const flipped = Buffer.from(bytes);
        flipped[at]! ^= 0x01;
        const tampered = parts.map((part, i) => (i === p ? flipped.toString('base64url') : part)).join('.');
        await expectRefused(keys, tampered, body);
      }
    }
  });

  it('refuses a header changed to another valid header (the header is authenticated)', async () => {
    const jwe = await encrypt(jwk, cardJson(), { fields: { cty: 'json' } });
    const [header, ...rest] = jwe.split('.');
    const changed = JSON.parse(Buffer.from(header!, 'base64url').toString('utf8'));
    changed.cty = 'JSON';
    await expectRefused(keys, [Buffer.from(JSON.stringify(changed)).toString('base64url'), ...rest].join('.'));
  });

  it('decrypts a JWE only for the tenant its header names: refused for another tenant, or where a session is expected', async () => {
    const body = cardJson();
    const jwe = await encrypt(jwk, body);
    expect((await keys.decrypt(jwe, tenantBinding('shop'))).toString('utf8')).toBe(body);
    await expectRefused(keys, jwe, body, tenantBinding('other-shop'));
    await expectRefused(keys, jwe, body, tenantBinding('shop-'));
    await expectRefused(keys, jwe, body, { param: 'cardvault_session', value: 'shop' });
  });

  it('refuses a JWE bound to no one, to a tenant and a session at once, or by a value that is not a non-empty string', async () => {
    const body = cardJson();
    // The control: the same body, bound as the request expects, decrypts.
    expect((await keys.decrypt(await encrypt(jwk, body), FOR_SHOP)).toString('utf8')).toBe(body);
    await expectRefused(keys, await encrypt(jwk, body, { binding: {} }), body);
    await expectRefused(keys, await encrypt(jwk, body, { binding: { ...SHOP, cardvault_session: 'shop' } }), body);
    await expectRefused(keys, await encrypt(jwk, body, { binding: { cardvault_tenant: ['shop'] } }), body);
    await expectRefused(keys, await encrypt(jwk, body, { binding: { ...SHOP, cardvault_tenants: 'shop' } }), body);
    await expectRefused(keys, await encrypt(jwk, body, { binding: { cardvault_tenant: '' } }), body, tenantBinding(''));
  });

  it('binds a hosted-form JWE to its session by the SHA-256 of the session token, base64url', async () => {
    const token = 'eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl';
    expect(sessionBinding(token)).toEqual({ param: 'cardvault_session', value: createHash('sha256').update(token, 'utf8').digest('base64url') });
    const body = cardJson();
    const jwe = await encrypt(jwk, body, { binding: { cardvault_session: sessionBinding(token).value } });
    expect((await keys.decrypt(jwe, sessionBinding(token))).toString('utf8')).toBe(body);
    await expectRefused(keys, jwe, body, sessionBinding(`${token}x`));
    await expectRefused(keys, jwe, body, tenantBinding(sessionBinding(token).value));
  });

  it('refuses a non-canonical spelling of the same bytes, and a truncated tag', async () => {
    const jwe = await encrypt(jwk, cardJson());
    const parts = jwe.split('.');
    // 16 bytes are 22 characters with 4 spare bits in the last; setting one spells the same tag differently.
    const tag = parts[4]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = tag.slice(0, -1) + alphabet[alphabet.indexOf(tag.slice(-1)) ^ 0x01];
    expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(tag, 'base64url'))).toBe(true);
    await expectRefused(keys, [...parts.slice(0, 4), respelled].join('.'));
    const truncated = Buffer.from(tag, 'base64url').subarray(0, 12).toString('base64url');
    await expectRefused(keys, [...parts.slice(0, 4), truncated].join('.'));
  });

  it('passes store and KMS outages through as themselves, not as a bad JWE', async () => {
    const jwe = await encrypt(jwk, cardJson());
    const down = { ...memoryStore(), listEncryptionKeys: async () => Promise.reject(new VaultError('database_unavailable')) };
    await expect(new ClientEncryptionKeys(kms, down, clock).decrypt(jwe, FOR_SHOP)).rejects.toMatchObject({ code: 'database_unavailable' });
    const noKms = { ...kms, decryptDataKey: async () => Promise.reject(new VaultError('kms_unavailable')) };
    await expect(new ClientEncryptionKeys(noKms, store, clock).decrypt(jwe, FOR_SHOP)).rejects.toMatchObject({ code: 'kms_unavailable' });
  });
});

describe('rotation with overlap', () => {
  it('publishes a new key at once, points clients at it once active, and decrypts with both until the old one retires', async () => {
    const store = memoryStore();
    const keys = new ClientEncryptionKeys(kms, store, clock);
    const oldKid = await keys.createKey();
    const oldJwk = (await keys.jwks()).keys[0]!;
    const toOld = await encrypt(oldJwk, cardJson());

    now += 1000;
    const newKid = await keys.createKey(60 * 60 * 1000);
    // Published before it is active, after the key clients should still use.
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([oldKid, newKid]);
    const newJwk = (await keys.jwks()).keys[1]!;
    // A client that encrypts to the new key early is served: the key is published, so it decrypts.
    const body = cardJson();
    expect((await keys.decrypt(await encrypt(newJwk, body), FOR_SHOP)).toString('utf8')).toBe(body);

    now += 60 * 60 * 1000;
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect((await keys.decrypt(toOld, FOR_SHOP)).length).toBeGreaterThan(0);

    await keys.retireKey(oldKid);
    expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    await expectRefused(keys, toOld);
  });

  it('honours a retirement made by another instance at its next decrypt, cached key or not', async () => {
    const store = memoryStore();
    const a = new ClientEncryptionKeys(kms, store, clock);
    const b = new ClientEncryptionKeys(kms, store, clock);
    const kid = await a.createKey();
    const jwe = await encrypt((await a.jwks()).keys[0]!, cardJson());
    await b.decrypt(jwe, FOR_SHOP);
    await a.retireKey(kid);
    await expectRefused(b, jwe);
  });
});
