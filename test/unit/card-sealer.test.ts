// Keys for use inside a transaction: a sealer holds its data key and counts its seals; an open reads through the store given.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { openLocalKms } from '../../src/crypto/local-kms';
import { Pan } from '../../src/domain/pan';
import type { DataKeyStore, FingerprintKeyStore, Kms, StoredDataKey } from '../../src/domain/ports';
import { generateTestPan } from '../support/test-cards';

/** Data keys in memory; `closed` makes every call fail, as a pool whose one connection a transaction holds would hang. */
function memoryStore(): DataKeyStore & FingerprintKeyStore & { rows: Map<string, StoredDataKey>; closed: boolean } {
  const rows = new Map<string, StoredDataKey>();
  const store = {
    rows,
    closed: false,
    check() {
      if (store.closed) throw new Error('the keyring reached its store');
    },
    async liveFingerprintKeys() {
      store.check();
      return [];
    },
    async insertDataKey(key: Omit<StoredDataKey, 'id' | 'createdAt'>) {
      store.check();
      const stored = { ...key, id: randomUUID(), createdAt: new Date() };
      rows.set(stored.id, stored);
      return stored;
    },
    async findDataKey(id: string) {
      store.check();
      return rows.get(id);
    },
  };
  return store;
}

let dir: string;
let kms: Kms;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cardvault-card-sealer-'));
  kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const secret = () => ({ pan: Pan.parse(generateTestPan()), holderName: 'Jane Q Cardholder' });

it('seals with the data key it was made with, never reaching the store again, and the seals open', async () => {
  const store = memoryStore();
  const crypto = createCardCrypto(new Keyring(kms, store, { maxAgeMs: 60_000, maxUses: 1000, maxEntries: 100 }));
  const seal = await crypto.sealer('tenant-a');
  store.closed = true;
  const card = secret();
  const sealed = [seal('token-1', card), seal('token-2', card)];

  expect(new Set(sealed.map((s) => s.dataKeyId)).size).toBe(1);
  expect(store.rows.size).toBe(1);
  store.closed = false;
  expect((await crypto.open('tenant-a', 'token-2', sealed[1]!)).pan.reveal()).toBe(card.pan.reveal());
});

it('counts each seal as a use of its key: after maxUses seals in all, the next seal takes a new key', async () => {
  const store = memoryStore();
  const crypto = createCardCrypto(new Keyring(kms, store, { maxAgeMs: 60_000, maxUses: 3, maxEntries: 100 }));
  const seal = await crypto.sealer('tenant-a');
  const ids = [seal('token-1', secret()).dataKeyId, seal('token-2', secret()).dataKeyId, seal('token-3', secret()).dataKeyId];
  const next = await crypto.seal('tenant-a', 'token-4', secret());

  expect(new Set(ids).size).toBe(1);
  expect(next.dataKeyId).not.toBe(ids[0]);
  expect(store.rows.size).toBe(2);
});

it('opens a card whose key is not in memory through the store it is given, never the keyring’s', async () => {
  const store = memoryStore();
  const card = secret();
  const sealed = await createCardCrypto(new Keyring(kms, store, { maxAgeMs: 60_000, maxUses: 1000, maxEntries: 100 })).seal('tenant-a', 'token-1', card);
  // Another instance: its cache is cold, and its own store unusable.
  const keyringStore = memoryStore();
  keyringStore.closed = true;
  const crypto = createCardCrypto(new Keyring(kms, keyringStore, { maxAgeMs: 60_000, maxUses: 1000, maxEntries: 100 }));

  expect((await crypto.open('tenant-a', 'token-1', sealed, store)).pan.reveal()).toBe(card.pan.reveal());
  // A key another tenant's card names is still refused, whichever store it comes through.
  await expect(crypto.open('tenant-b', 'token-1', sealed, store)).rejects.toThrow('a data key is missing');
});
