// Data-key caching and rotation: age, use and size limits, rotation of the sealing key, single-flight KMS calls, tenant isolation.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyCache, type KeyCacheLimits } from '../../src/crypto/key-cache';
import { Keyring } from '../../src/crypto/keyring';
import { openLocalKms } from '../../src/crypto/local-kms';
import type { DataKeyStore, FingerprintKeyStore, Kms, StoredDataKey, StoredFingerprintKey, Tenant } from '../../src/domain/ports';
import { isVaultError } from '../../src/errors';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { open } from '../../src/crypto/sealer';
import { Pan } from '../../src/domain/pan';
import type { CardSealer } from '../../src/domain/ports';
import { generateTestPan } from '../support/test-cards';

/** A full garbage collection, as `node --expose-gc` would offer it. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

/** A clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('KeyCache', () => {
  const limits: KeyCacheLimits = { maxAgeMs: 1000, maxUses: 1000, maxEntries: 10 };

  it('returns undefined for an id it never held', () => {
    expect(new KeyCache(limits).lease('absent')).toBeUndefined();
  });

  it('serves a key until just before maxAge and drops it at maxAge', () => {
    const clock = manualClock();
    const cache = new KeyCache(limits, clock.now);
    const key = randomBytes(32);
    cache.put('k', key);

    clock.advance(999);
    expect(cache.lease('k')?.key).toBe(key);
    clock.advance(1);
    expect(cache.lease('k')?.key).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('measures age from the last put, so a re-put key lives again', () => {
    const clock = manualClock();
    const cache = new KeyCache(limits, clock.now);
    cache.put('k', randomBytes(32));
    clock.advance(900);
    const fresh = randomBytes(32);
    cache.put('k', fresh);
    clock.advance(900);
    expect(cache.lease('k')?.key).toBe(fresh);
  });

  it('serves a key exactly maxUses times, then drops it', () => {
    const cache = new KeyCache({ ...limits, maxUses: 3 });
    const key = randomBytes(32);
    cache.put('k', key);

    expect([cache.lease('k')?.key, cache.lease('k')?.key, cache.lease('k')?.key]).toEqual([key, key, key]);
    expect(cache.lease('k')?.key).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.stats()).toEqual({ hits: 3, misses: 1, size: 0 });
  });

  it('evicts the least recently used entry beyond maxEntries, counting a use as recent', () => {
    const cache = new KeyCache({ ...limits, maxEntries: 2 });
    const [a, b, c] = [randomBytes(32), randomBytes(32), randomBytes(32)];
    cache.put('a', a);
    cache.put('b', b);
    expect(cache.lease('a')?.key).toBe(a);
    cache.put('c', c);

    expect(cache.size).toBe(2);
    expect(cache.lease('b')?.key).toBeUndefined();
    expect(cache.lease('a')?.key).toBe(a);
    expect(cache.lease('c')?.key).toBe(c);
  });

  it('evicts the oldest put when nothing was used', () => {
    const cache = new KeyCache({ ...limits, maxEntries: 2 });
    cache.put('a', randomBytes(32));
    cache.put('b', randomBytes(32));
    cache.put('c', randomBytes(32));
    expect(cache.lease('a')?.key).toBeUndefined();
    expect(cache.lease('b')?.key).toBeDefined();
  });

  it('drops every key past its age or uses when swept, though nothing asks for it again', () => {
    const clock = manualClock();
    const cache = new KeyCache({ ...limits, maxUses: 2 }, clock.now);
    cache.put('idle', randomBytes(32));
    cache.put('worn', randomBytes(32));
    cache.lease('worn')!.release();
    cache.lease('worn')!.release();
    clock.advance(500);
    const young = randomBytes(32);
    cache.put('young', young);
    cache.dropExpired();
    expect(cache.size).toBe(2);
    clock.advance(500);
    cache.dropExpired();
    expect(cache.size).toBe(1);
    expect(cache.lease('young')?.key).toBe(young);
  });

  it('forgets a deleted entry', () => {
    const cache = new KeyCache(limits);
    cache.put('k', randomBytes(32));
    cache.delete('k');
    expect(cache.lease('k')?.key).toBeUndefined();
  });

  it('zeroes a key once it leaves: aged out when asked for, swept, spent, evicted past maxEntries, replaced or deleted', () => {
    const clock = manualClock();
    const cache = new KeyCache({ ...limits, maxUses: 1, maxEntries: 3 }, clock.now);
    const keys = Object.fromEntries(['aged', 'swept', 'spent', 'evicted', 'replaced', 'deleted'].map((id) => [id, randomBytes(32)]));
    cache.put('aged', keys.aged!);
    cache.put('swept', keys.swept!);
    clock.advance(limits.maxAgeMs);
    expect(cache.lease('aged')).toBeUndefined();
    cache.dropExpired();
    cache.put('spent', keys.spent!);
    cache.lease('spent')!.release();
    expect(cache.lease('spent')).toBeUndefined();
    cache.put('evicted', keys.evicted!);
    cache.put('replaced', keys.replaced!);
    cache.put('deleted', keys.deleted!);
    cache.put('replaced', randomBytes(32));
    cache.put('another', randomBytes(32));
    cache.delete('deleted');

    expect(cache.size).toBe(2);
    for (const [id, key] of Object.entries(keys)) expect([id, key.equals(Buffer.alloc(32))]).toEqual([id, true]);
  });

  it('keeps a leased key whole after it leaves the cache, and zeroes it when the last lease is released', () => {
    const clock = manualClock();
    const cache = new KeyCache(limits, clock.now);
    const key = randomBytes(32);
    const copy = Buffer.from(key);
    cache.put('k', key);
    const first = cache.lease('k')!;
    const second = cache.lease('k')!;
    clock.advance(limits.maxAgeMs);
    cache.dropExpired();

    expect(cache.size).toBe(0);
    expect(first.key.equals(copy)).toBe(true);
    first.release();
    first.release();
    expect(second.key.equals(copy)).toBe(true);
    second.release();
    expect(key.equals(Buffer.alloc(32))).toBe(true);
  });

  it('does not zero a key put again with the same bytes: it lives again', () => {
    const clock = manualClock();
    const cache = new KeyCache(limits, clock.now);
    const key = randomBytes(32);
    const copy = Buffer.from(key);
    cache.put('k', key);
    clock.advance(900);
    cache.put('k', key);
    clock.advance(900);
    expect(cache.lease('k')?.key.equals(copy)).toBe(true);
  });
});

/** Data keys by id and fingerprint keys by tenant, in memory: this suite tests key handling, not storage. */
function memoryDataKeyStore(): DataKeyStore & FingerprintKeyStore & { rows: Map<string, StoredDataKey>; fingerprintKeys: Map<string, StoredFingerprintKey[]> } {
  const rows = new Map<string, StoredDataKey>();
  const fingerprintKeys = new Map<string, StoredFingerprintKey[]>();
  return {
    rows,
    fingerprintKeys,
    async liveFingerprintKeys(tenantId) {
      return fingerprintKeys.get(tenantId) ?? [];
    },
    async insertDataKey(key) {
      const stored = { ...key, id: randomUUID(), createdAt: new Date() };
      rows.set(stored.id, stored);
      return stored;
    },
    async findDataKey(id) {
      return rows.get(id);
    },
  };
}

/** The real local KMS, counting calls and able to fail the next few. */
function countingKms(inner: Kms): Kms & { calls: { generate: number; decrypt: number }; failNext: (n: number) => void } {
  const calls = { generate: 0, decrypt: 0 };
  let failures = 0;
  async function gate(): Promise<void> {
    // A real network hop: lets concurrent callers pile up before the first call returns.
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (failures > 0) {
      failures -= 1;
      throw new Error('KMS unreachable');
    }
  }
  return {
    provider: inner.provider,
    calls,
    failNext: (n) => (failures = n),
    async generateDataKey(context) {
      calls.generate += 1;
      await gate();
      return inner.generateDataKey(context);
    },
    async decryptDataKey(wrapped, context) {
      calls.decrypt += 1;
      await gate();
      return inner.decryptDataKey(wrapped, context);
    },
    reEncrypt: (wrapped, context, destination) => inner.reEncrypt(wrapped, context, destination),
    resolveKeyId: (keyId) => inner.resolveKeyId(keyId),
  };
}

describe('Keyring', () => {
  let dir: string;
  let localKms: Kms;
  let kms: ReturnType<typeof countingKms>;
  let store: ReturnType<typeof memoryDataKeyStore>;
  const limits: KeyCacheLimits = { maxAgeMs: 60_000, maxUses: 1_000, maxEntries: 100 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cardvault-keyring-'));
    localKms = await openLocalKms({ keyFile: join(dir, 'master.key') });
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    kms = countingKms(localKms);
    store = memoryDataKeyStore();
  });

  async function newTenant(): Promise<Tenant> {
    const id = randomUUID();
    const { wrapped } = await localKms.generateDataKey({ tenantId: id, purpose: 'fingerprint' });
    store.fingerprintKeys.set(id, [{ generation: 1, state: 'current', wrapped }]);
    return { id, name: `t-${id.slice(0, 8)}`, createdAt: new Date() };
  }

  it('seals with one stored data key per tenant while it is within its limits', async () => {
    const keyring = new Keyring(kms, store, limits);
    const first = await keyring.sealingKey('tenant-a');
    const second = await keyring.sealingKey('tenant-a');
    const other = await keyring.sealingKey('tenant-b');

    expect(second.id).toBe(first.id);
    expect(second.key.equals(first.key)).toBe(true);
    expect(other.id).not.toBe(first.id);
    expect(first.key).toHaveLength(32);
    expect(kms.calls.generate).toBe(2);
    expect(store.rows.get(first.id)).toMatchObject({ tenantId: 'tenant-a', purpose: 'card-data' });
  });

  it('rotates to a new data key after maxUses seals', async () => {
    const keyring = new Keyring(kms, store, { ...limits, maxUses: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await keyring.sealingKey('tenant-a')).id);

    expect(kms.calls.generate).toBe(3);
    expect(new Set(ids).size).toBe(3);
    expect(ids.slice(0, 3).every((id) => id === ids[0])).toBe(true);
    expect(ids.slice(3, 6).every((id) => id === ids[3])).toBe(true);
    expect(ids[6]).not.toBe(ids[3]);
  });

  it('rotates to a new data key once the current one reaches maxAge, and not before', async () => {
    const clock = manualClock();
    const keyring = new Keyring(kms, store, limits, clock.now);
    const first = await keyring.sealingKey('tenant-a');

    clock.advance(limits.maxAgeMs - 1);
    expect((await keyring.sealingKey('tenant-a')).id).toBe(first.id);
    clock.advance(1);
    const rotated = await keyring.sealingKey('tenant-a');

    expect(rotated.id).not.toBe(first.id);
    expect(rotated.key.equals(first.key)).toBe(false);
    expect(kms.calls.generate).toBe(2);
  });

  it("keeps no plaintext key of an idle tenant in memory past maxAge: sealing, opening and fingerprint keys are swept", async () => {
    const clock = manualClock();
    const keyring = new Keyring(kms, store, limits, clock.now);
    const tenant = await newTenant();
    const sealing = await keyring.sealingKey(tenant.id);
    await keyring.openingKey(tenant.id, sealing.id);
    await keyring.fingerprintKey(tenant.id, 1);
    expect(keyring.stats()).toMatchObject({ size: 2, sealing: 1 });

    clock.advance(limits.maxAgeMs - 1);
    keyring.dropExpired();
    expect(keyring.stats()).toMatchObject({ size: 2, sealing: 1 });
    // The tenant goes quiet: nothing asks for its keys again, and still none stays.
    clock.advance(1);
    keyring.dropExpired();
    expect(keyring.stats()).toMatchObject({ size: 0, sealing: 0 });
    expect((await keyring.openingKey(tenant.id, sealing.id)).key.equals(sealing.key)).toBe(true);
  });

  it('still opens with a rotated-out data key, through the KMS once its cache entry has aged out', async () => {
    const clock = manualClock();
    const keyring = new Keyring(kms, store, limits, clock.now);
    const old = await keyring.sealingKey('tenant-a');
    clock.advance(limits.maxAgeMs);
    await keyring.sealingKey('tenant-a');

    const opened = await keyring.openingKey('tenant-a', old.id);
    expect(opened.key.equals(old.key)).toBe(true);
    expect(kms.calls.decrypt).toBe(1);
  });

  it('makes one KMS generateDataKey for concurrent first seals of one tenant', async () => {
    const keyring = new Keyring(kms, store, limits);
    const results = await Promise.all(Array.from({ length: 20 }, () => keyring.sealingKey('tenant-a')));

    expect(kms.calls.generate).toBe(1);
    expect(store.rows.size).toBe(1);
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
  });

  it('makes one KMS decryptDataKey for concurrent first opens of one data key', async () => {
    const sealed = await new Keyring(kms, store, limits).sealingKey('tenant-a');
    const keyring = new Keyring(kms, store, limits);
    const keys = await Promise.all(Array.from({ length: 20 }, () => keyring.openingKey('tenant-a', sealed.id)));

    expect(kms.calls.decrypt).toBe(1);
    for (const lease of keys) expect(lease.key.equals(sealed.key)).toBe(true);
    await keyring.openingKey('tenant-a', sealed.id);
    expect(kms.calls.decrypt).toBe(1);
  });

  it('makes one KMS decryptDataKey for concurrent first fingerprints of one tenant', async () => {
    const tenant = await newTenant();
    const keyring = new Keyring(kms, store, limits);
    const keys = await Promise.all(Array.from({ length: 20 }, () => keyring.fingerprintKey(tenant.id, 1)));

    expect(kms.calls.decrypt).toBe(1);
    expect(new Set(keys.map((k) => k.key.toString('hex'))).size).toBe(1);
  });

  it('does not remember a failed KMS call: every waiter fails, and the next call tries again', async () => {
    const keyring = new Keyring(kms, store, limits);
    kms.failNext(1);
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => keyring.sealingKey('tenant-a')));

    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    expect(kms.calls.generate).toBe(1);
    expect(store.rows.size).toBe(0);
    await keyring.sealingKey('tenant-a');
    expect(kms.calls.generate).toBe(2);
  });

  it("refuses to open with another tenant's data key when the key is not cached", async () => {
    const sealed = await new Keyring(kms, store, limits).sealingKey('tenant-a');
    const keyring = new Keyring(kms, store, limits);

    expect(isVaultError(await rejection(keyring.openingKey('tenant-b', sealed.id)), 'internal_error')).toBe(true);
    expect(kms.calls.decrypt).toBe(0);
  });

  it("refuses to open with another tenant's data key while that key is cached from sealing", async () => {
    const keyring = new Keyring(kms, store, limits);
    const sealed = await keyring.sealingKey('tenant-a');

    expect(isVaultError(await rejection(keyring.openingKey('tenant-b', sealed.id)), 'internal_error')).toBe(true);
  });

  it("refuses to open with another tenant's data key while its owner's unwrap is in flight", async () => {
    const sealed = await new Keyring(kms, store, limits).sealingKey('tenant-a');
    const keyring = new Keyring(kms, store, limits);

    const [owner, intruder] = await Promise.allSettled([keyring.openingKey('tenant-a', sealed.id), keyring.openingKey('tenant-b', sealed.id)]);

    expect(owner.status).toBe('fulfilled');
    expect(intruder.status).toBe('rejected');
  });

  it('zeroes sealing, opening and fingerprint keys the sweep drops, except one an open in flight holds, which it finishes with and then zeroes', async () => {
    const clock = manualClock();
    const keyring = new Keyring(kms, store, limits, clock.now);
    const crypto = createCardCrypto(keyring);
    const tenant = await newTenant();
    const card = { pan: Pan.parse(generateTestPan()), holderName: null };
    const sealed = await crypto.seal(tenant.id, 'token-1', card);
    const sealing = await keyring.sealingKey(tenant.id);
    const fingerprint = await keyring.fingerprintKey(tenant.id, 1);
    // An open under way: its key taken, its decrypt not yet run.
    const inFlight = await keyring.openingKey(tenant.id, sealed.dataKeyId);
    sealing.release();
    fingerprint.release();

    clock.advance(limits.maxAgeMs);
    keyring.dropExpired();

    expect(keyring.stats()).toMatchObject({ size: 0, sealing: 0 });
    expect(sealing.key.equals(Buffer.alloc(32))).toBe(true);
    expect(fingerprint.key.equals(Buffer.alloc(32))).toBe(true);
    expect(inFlight.key.equals(Buffer.alloc(32))).toBe(false);
    expect(JSON.parse(open(inFlight.key, sealed, Buffer.from(`cardvault/card/v1\u0000${tenant.id}\u0000token-1`)).toString()).n).toBe(card.pan.reveal());
    inFlight.release();
    expect(inFlight.key.equals(Buffer.alloc(32))).toBe(true);
    // Needed again, the key comes back from the KMS: nothing sealed with it is lost.
    expect((await crypto.open(tenant.id, 'token-1', sealed)).pan.reveal()).toBe(card.pan.reveal());
  });

  it('keeps the key of a sealer whole while the sealer lives, though the key left the cache, and zeroes it once the sealer is collected', async () => {
    const clock = manualClock();
    const keyring = new Keyring(kms, store, limits, clock.now);
    const crypto = createCardCrypto(keyring);
    const card = { pan: Pan.parse(generateTestPan()), holderName: null };
    let sealer: CardSealer | undefined = await crypto.sealer('tenant-a');
    const sealing = await keyring.sealingKey('tenant-a');
    sealing.release();
    clock.advance(limits.maxAgeMs);
    keyring.dropExpired();
    // A new sealing key meanwhile: the sealer still seals with its own, which still opens.
    await crypto.seal('tenant-a', 'token-0', card);

    const sealed = sealer('token-1', card);
    expect(sealed.dataKeyId).toBe(sealing.id);
    expect((await crypto.open('tenant-a', 'token-1', sealed)).pan.reveal()).toBe(card.pan.reveal());
    expect(sealing.key.equals(Buffer.alloc(32))).toBe(false);

    sealer = undefined;
    for (let i = 0; i < 20 && !sealing.key.equals(Buffer.alloc(32)); i++) {
      collectGarbage();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(sealing.key.equals(Buffer.alloc(32))).toBe(true);
  });

  it('refuses a data key id the store does not hold', async () => {
    const keyring = new Keyring(kms, store, limits);
    expect(isVaultError(await rejection(keyring.openingKey('tenant-a', randomUUID())), 'internal_error')).toBe(true);
  });
});
