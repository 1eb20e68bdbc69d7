// AES-256-GCM sealing and card crypto: round trips, every tamper refused alike, AAD binding to tenant and token, keyed fingerprints.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { openLocalKms } from '../../src/crypto/local-kms';
import { open, seal, type Sealed } from '../../src/crypto/sealer';
import { Pan } from '../../src/domain/pan';
import type { CardCrypto, DataKeyStore, FingerprintKeyStore, Kms, SealedCard, StoredDataKey, StoredFingerprintKey, Tenant } from '../../src/domain/ports';
import { isVaultError } from '../../src/errors';
import { generateTestPan, PUBLISHED_TEST_CARDS } from '../support/test-cards';
import { errorOf } from '../support/error-of';

const SEAL_FAILURE = 'internal_error: a sealed value failed authentication';


async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

function expectSealFailure(err: unknown): void {
  expect(isVaultError(err, 'internal_error')).toBe(true);
  expect((err as Error).message).toBe(SEAL_FAILURE);
  expect((err as Error).cause).toBeUndefined();
}

function flipped(buffer: Buffer, byte: number, bit = 0): Buffer {
  const copy = Buffer.from(buffer);
  copy[byte] = copy[byte]! ^ (1 << bit);
  return copy;
}

describe('seal and open', () => {
  const key = randomBytes(32);
  const aad = Buffer.from('cardvault/test\u0000tenant-a\u0000token-x');
  const plaintext = Buffer.from('{"n":"4111111111111111","h":null}');

  it('round-trips a plaintext, including the empty one', () => {
    expect(open(key, seal(key, plaintext, aad), aad).equals(plaintext)).toBe(true);
    expect(open(key, seal(key, Buffer.alloc(0), aad), aad)).toHaveLength(0);
  });

  it('produces ciphertext of the plaintext length, a 12-byte IV and a 16-byte tag', () => {
    const sealed = seal(key, plaintext, aad);
    expect(sealed.iv).toHaveLength(12);
    expect(sealed.tag).toHaveLength(16);
    expect(sealed.ciphertext).toHaveLength(plaintext.length);
    expect(sealed.ciphertext.equals(plaintext)).toBe(false);
  });

  it('uses a distinct IV for each of 10,000 seals under one key', () => {
    const ivs = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const { iv } = seal(key, plaintext, aad);
      expect(iv).toHaveLength(12);
      ivs.add(iv.toString('hex'));
    }
    expect(ivs.size).toBe(10_000);
  });

  it('refuses a flipped bit anywhere in the ciphertext, IV or tag with one uninformative error', () => {
    const sealed = seal(key, plaintext, aad);
    for (const part of ['ciphertext', 'iv', 'tag'] as const) {
      for (let byte = 0; byte < sealed[part].length; byte++) {
        const bit = byte % 8;
        expectSealFailure(errorOf(() => open(key, { ...sealed, [part]: flipped(sealed[part], byte, bit) }, aad)));
      }
    }
  });

  it('refuses a tag truncated to 4 or 12 bytes, though it is a true prefix of the real tag', () => {
    const sealed = seal(key, plaintext, aad);
    for (const length of [0, 1, 4, 8, 12, 15]) {
      expectSealFailure(errorOf(() => open(key, { ...sealed, tag: sealed.tag.subarray(0, length) }, aad)));
    }
  });

  it('refuses an overlong tag, a wrong-length IV and a truncated or extended ciphertext', () => {
    const sealed = seal(key, plaintext, aad);
    const bad: Sealed[] = [
      { ...sealed, tag: Buffer.concat([sealed.tag, Buffer.of(0)]) },
      { ...sealed, iv: sealed.iv.subarray(0, 11) },
      { ...sealed, iv: Buffer.concat([sealed.iv, Buffer.of(0)]) },
      { ...sealed, ciphertext: sealed.ciphertext.subarray(0, sealed.ciphertext.length - 1) },
      { ...sealed, ciphertext: Buffer.concat([sealed.ciphertext, Buffer.of(0)]) },
    ];
    for (const sealedValue of bad) expectSealFailure(errorOf(() => open(key, sealedValue, aad)));
  });

  it('refuses another AAD, including one differing in a single byte or missing entirely', () => {
    const sealed = seal(key, plaintext, aad);
    expectSealFailure(errorOf(() => open(key, sealed, flipped(aad, aad.length - 1))));
    expectSealFailure(errorOf(() => open(key, sealed, Buffer.from('cardvault/test\u0000tenant-b\u0000token-x'))));
    expectSealFailure(errorOf(() => open(key, sealed, Buffer.alloc(0))));
  });

  it('refuses another key, and a key of the wrong length, with the same error', () => {
    const sealed = seal(key, plaintext, aad);
    expectSealFailure(errorOf(() => open(randomBytes(32), sealed, aad)));
    expectSealFailure(errorOf(() => open(flipped(key, 0), sealed, aad)));
    expectSealFailure(errorOf(() => open(key.subarray(0, 16), sealed, aad)));
  });

  it('refuses a ciphertext spliced from another seal under the same key and AAD', () => {
    const a = seal(key, plaintext, aad);
    const b = seal(key, Buffer.from('{"n":"5555555555554444","h":null}'), aad);
    expectSealFailure(errorOf(() => open(key, { ...a, ciphertext: b.ciphertext }, aad)));
    expectSealFailure(errorOf(() => open(key, { ...a, tag: b.tag }, aad)));
    expectSealFailure(errorOf(() => open(key, { ...a, iv: b.iv }, aad)));
  });
});

/** Data keys by id and fingerprint keys by tenant, in memory: this suite tests the crypto, not the storage. */
function memoryDataKeyStore(): DataKeyStore & FingerprintKeyStore & { fingerprintKeys: Map<string, StoredFingerprintKey[]> } {
  const keys = new Map<string, StoredDataKey>();
  const fingerprintKeys = new Map<string, StoredFingerprintKey[]>();
  return {
    fingerprintKeys,
    async liveFingerprintKeys(tenantId) {
      return fingerprintKeys.get(tenantId) ?? [];
    },
    async insertDataKey(key) {
      const stored = { ...key, id: randomUUID(), createdAt: new Date() };
      keys.set(stored.id, stored);
      return stored;
    },
    async findDataKey(id) {
      return keys.get(id);
    },
  };
}

/** The fingerprint a steady-state instance looks a number up by. */
async function fingerprintOf(crypto: CardCrypto, tenant: Tenant, pan: Pan): Promise<string> {
  return (await crypto.fingerprint(tenant, pan)).lookup.value;
}

describe('card crypto', () => {
  let dir: string;
  let kms: Kms;
  let store: ReturnType<typeof memoryDataKeyStore>;
  let crypto: CardCrypto;
  let tenantA: Tenant;
  let tenantB: Tenant;

  async function newTenant(name: string): Promise<Tenant> {
    const id = randomUUID();
    const { wrapped } = await kms.generateDataKey({ tenantId: id, purpose: 'fingerprint' });
    store.fingerprintKeys.set(id, [{ generation: 1, state: 'current', wrapped }]);
    return { id, name, createdAt: new Date() };
  }

  function newKeyring(): Keyring {
    return new Keyring(kms, store, { maxAgeMs: 3_600_000, maxUses: 1_000_000, maxEntries: 100 });
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cardvault-card-crypto-'));
    kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    store = memoryDataKeyStore();
    crypto = createCardCrypto(newKeyring());
    tenantA = await newTenant('acme');
    tenantB = await newTenant('globex');
  });

  it('round-trips every published test card with and without a holder name', async () => {
    for (const { number } of PUBLISHED_TEST_CARDS) {
      const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(number), holderName: 'Jane Q Cardholder' });
      const opened = await crypto.open(tenantA.id, 'token-x', sealed);
      expect(opened.pan.reveal()).toBe(number);
      expect(opened.holderName).toBe('Jane Q Cardholder');
    }
    const pan = generateTestPan();
    const sealed = await crypto.seal(tenantA.id, 'token-y', { pan: Pan.parse(pan), holderName: null });
    expect(await crypto.open(tenantA.id, 'token-y', sealed)).toEqual({ pan: expect.any(Pan), holderName: null });
  });

  it('keeps the PAN and holder name out of the sealed card', async () => {
    const pan = generateTestPan();
    const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(pan), holderName: 'Jane Q Cardholder' });
    const rendered = [sealed.ciphertext, sealed.iv, sealed.tag].map((b) => b.toString('latin1')).join('') + JSON.stringify(sealed);
    expect(rendered).not.toContain(pan);
    expect(rendered).not.toContain('Cardholder');
  });

  it('refuses a card copied onto another token of the same tenant, or the same token of another tenant', async () => {
    const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(generateTestPan()), holderName: null });

    expectSealFailure(await rejection(crypto.open(tenantA.id, 'token-y', sealed)));
    expect(isVaultError(await rejection(crypto.open(tenantB.id, 'token-x', sealed)), 'internal_error')).toBe(true);
  });

  it("refuses a card moved to another tenant's row and relabelled with that tenant's data key id", async () => {
    const forB = await crypto.seal(tenantB.id, 'token-x', { pan: Pan.parse(generateTestPan()), holderName: null });
    const forA = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(generateTestPan()), holderName: null });
    const moved: SealedCard = { ...forA, dataKeyId: forB.dataKeyId };
    expectSealFailure(await rejection(crypto.open(tenantB.id, 'token-x', moved)));
  });

  it('refuses a tampered card with the same uninformative error', async () => {
    const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(generateTestPan()), holderName: null });
    expectSealFailure(await rejection(crypto.open(tenantA.id, 'token-x', { ...sealed, ciphertext: flipped(sealed.ciphertext, 3) })));
    expectSealFailure(await rejection(crypto.open(tenantA.id, 'token-x', { ...sealed, tag: sealed.tag.subarray(0, 4) })));
  });

  it('opens with a fresh keyring, unwrapping the data key from the store through the KMS', async () => {
    const pan = generateTestPan('555555');
    const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(pan), holderName: null });
    const restarted = createCardCrypto(newKeyring());
    expect((await restarted.open(tenantA.id, 'token-x', sealed)).pan.reveal()).toBe(pan);
  });

  it('gives deterministic fingerprints per tenant, across keyrings', async () => {
    const pan = Pan.parse(generateTestPan());
    const first = await fingerprintOf(crypto, tenantA, pan);
    expect(first).toMatch(/^fp_[A-Za-z0-9_-]{43}$/);
    expect(await fingerprintOf(crypto, tenantA, pan)).toBe(first);
    expect(await fingerprintOf(createCardCrypto(newKeyring()), tenantA, Pan.parse(pan.reveal()))).toBe(first);
  });

  it('gives different fingerprints for the same PAN in different tenants, and for different PANs in one tenant', async () => {
    const pan = Pan.parse(generateTestPan());
    expect(await fingerprintOf(crypto, tenantA, pan)).not.toBe(await fingerprintOf(crypto, tenantB, pan));
    expect(await fingerprintOf(crypto, tenantA, pan)).not.toBe(await fingerprintOf(crypto, tenantA, Pan.parse(generateTestPan())));
  });

  it('does not compute a fingerprint as a plain hash of the PAN', async () => {
    const number = PUBLISHED_TEST_CARDS[1]!.number;
    const fingerprint = await fingerprintOf(crypto, tenantA, Pan.parse(number));
    const body = fingerprint.slice('fp_'.length);
    for (const algorithm of ['sha256', 'sha1', 'sha512']) {
      const digest = createHash(algorithm).update(number).digest();
      for (const encoding of ['hex', 'base64', 'base64url'] as const) {
        expect(body).not.toBe(digest.toString(encoding));
        expect(fingerprint).not.toContain(digest.toString(encoding).slice(0, 16));
      }
    }
    expect(fingerprint).not.toContain(number);
    expect(fingerprint).not.toContain(number.slice(-4) + number.slice(0, 6));
  });

  it('puts the PAN in no error it throws', async () => {
    const pan = generateTestPan();
    const sealed = await crypto.seal(tenantA.id, 'token-x', { pan: Pan.parse(pan), holderName: 'Jane Q Cardholder' });
    const errors = [
      await rejection(crypto.open(tenantA.id, 'token-y', sealed)),
      await rejection(crypto.open(tenantB.id, 'token-x', sealed)),
      await rejection(crypto.open(tenantA.id, 'token-x', { ...sealed, ciphertext: flipped(sealed.ciphertext, 0) })),
      await rejection(crypto.open(tenantA.id, 'token-x', { ...sealed, dataKeyId: randomUUID() })),
    ];
    for (const err of errors) {
      expect(isVaultError(err, 'internal_error')).toBe(true);
      const rendered = [(err as Error).message, (err as Error).stack, JSON.stringify(err), inspect(err, { depth: 5 })].join('\n');
      expect(rendered).not.toContain(pan);
      expect(rendered).not.toContain('Cardholder');
    }
  });
});
