// Concurrent tokenize requests with Idempotency-Keys share transactions: each must still be answered exactly as
// alone, with one card per number and one outcome per key, whatever else its batch held.
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { CvcHolder } from '../../src/domain/cvc';
import { Pan } from '../../src/domain/pan';
import type { Principal } from '../../src/domain/policy';
import { SYSTEM_CONTEXT, type CardStore, type Clock } from '../../src/domain/ports';
import { cryptoTokenRandomness } from '../../src/crypto/random';
import type { CardInput } from '../../src/domain/card-metadata';
import { Vault } from '../../src/domain/vault';
import { PgCardStore } from '../../src/store/card-store';
import { MemoryCvcStore } from '../../src/store/cvc-store';
import type { Db } from '../../src/store/db';
import { PgTenantStore } from '../../src/store/tenant-store';
import { VaultError } from '../../src/errors';
import { buildHarness, type Harness } from '../support/harness';
import { countCards } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

/** The harness's pool with its transactions counted; every statement still runs on the real database. */
function countingTransactions(db: Db): { db: Db; transactions: () => number } {
  let n = 0;
  return {
    db: {
      ...db,
      transaction: (fn, options) => {
        n += 1;
        return db.transaction(fn, options);
      },
    },
    transactions: () => n,
  };
}

/** `target` with one method replaced; the others bound to it (the store keeps private state). */
function replacing<T extends object, K extends keyof T>(target: T, name: K, impl: T[K]): T {
  return new Proxy(target, {
    get: (obj, prop) => {
      if (prop === name) return impl;
      const value: unknown = Reflect.get(obj, prop, obj);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(obj) : value;
    },
  });
}

interface Setup {
  db?: Db;
  clock?: Clock;
  /** Wraps the store each transaction hands out (to fail a statement on purpose). */
  inTransaction?: (tx: CardStore) => CardStore;
}

async function vaultOnItsOwnTenant(setup: Setup = {}) {
  const db = setup.db ?? h.db;
  const crypto = createCardCrypto(new Keyring(h.kms, new PgTenantStore(h.db), { maxAgeMs: 60_000, maxUses: 100_000, maxEntries: 100 }));
  let cards: CardStore = new PgCardStore(db, db);
  const wrap = setup.inTransaction;
  if (wrap) {
    const store = cards;
    cards = replacing(cards, 'transaction', (fn) => store.transaction((tx) => fn(wrap(tx))));
  }
  const vault = new Vault({
    cards,
    audit: h.parts.audit,
    cvc: new CvcHolder(new MemoryCvcStore(), crypto, 600),
    crypto,
    randomness: cryptoTokenRandomness,
    clock: setup.clock ?? { now: () => new Date() },
    idempotencyTtlSeconds: 86_400,
    // One batch out at a time: requests made while it runs share the next one.
    keyedBatch: { maxBatch: 64, maxInFlight: 1 },
  });
  const { tenant } = await h.tenant([]);
  const principal: Principal = { tenant, apiKeyId: 'test', role: { name: 'test', description: '', actions: new Set(['tokenize']), detokenize: undefined } };
  const tokenize = (card: CardInput, key: string) => vault.tokenize(principal, SYSTEM_CONTEXT, card, 'opaque', key);
  return { tokenize, tenantId: tenant.id };
}

const cardOf = (pan: string, expYear = 2031): CardInput => ({ pan: Pan.parse(pan), expMonth: 12, expYear, holderName: null, cvc: null });

async function storedResponse(tenantId: string, key: string): Promise<unknown> {
  const [record] = await h.idempotencyRecords(tenantId, key);
  expect(record).toBeDefined();
  const rows = await h.db.query<{ response: unknown }>(
    'SELECT response FROM idempotency_keys WHERE tenant_id = $1 AND (key_digest_odd = $2 OR key_digest_even = $3)',
    [tenantId, record!.key_digest_odd, record!.key_digest_even],
  );
  return rows[0]!.response;
}

it('settles many concurrent keyed requests in far fewer transactions, each card vaulted once and each response recorded', async () => {
  const counted = countingTransactions(h.db);
  const { tokenize, tenantId } = await vaultOnItsOwnTenant({ db: counted.db });
  const requests = Array.from({ length: 40 }, (_, i) => ({ key: `batch-${i}`, pan: newPan() }));

  const outcomes = await Promise.all(requests.map((r) => tokenize(cardOf(r.pan), r.key)));

  expect(outcomes.every((o) => o.created)).toBe(true);
  expect(new Set(outcomes.map((o) => o.card.token)).size).toBe(40);
  expect(await countCards(h.db, tenantId)).toBe(40);
  // Alone, each request takes a transaction of its own.
  expect(counted.transactions()).toBeLessThanOrEqual(10);
  for (const [i, r] of requests.entries()) {
    expect(await storedResponse(tenantId, r.key)).toEqual({ created: true, card: { ...outcomes[i]!.card, cvcHeld: undefined } });
  }
  // Retried together: every one replays its own outcome (created: true, which a second vaulting could not say).
  const retried = await Promise.all(requests.map((r) => tokenize(cardOf(r.pan), r.key)));
  expect(retried.map((o) => [o.created, o.card.token])).toEqual(outcomes.map((o) => [true, o.card.token]));
  expect(await countCards(h.db, tenantId)).toBe(40);
});

it('answers a retry, a reused key and a known card batched with new requests as it would alone, writing nothing for the refused one', async () => {
  const { tokenize, tenantId } = await vaultOnItsOwnTenant();
  const original = { key: 'order-77', pan: newPan() };
  const first = await tokenize(cardOf(original.pan), original.key);
  const known = { key: 'order-78', pan: newPan() };
  const knownFirst = await tokenize(cardOf(known.pan), 'order-78-first');
  const plug = tokenize(cardOf(newPan()), 'plug');
  const fresh = Array.from({ length: 12 }, (_, i) => ({ key: `fresh-${i}`, pan: newPan() }));
  const reusedPan = newPan();

  const [retry, reused, knownAgain, ...freshOutcomes] = await Promise.allSettled([
    tokenize(cardOf(original.pan), original.key),
    tokenize(cardOf(reusedPan), 'order-78-first'),
    tokenize(cardOf(known.pan, 2033), known.key),
    ...fresh.map((r) => tokenize(cardOf(r.pan), r.key)),
  ]);
  await plug;

  expect(retry).toMatchObject({ status: 'fulfilled', value: { created: true, card: { token: first.card.token } } });
  expect(reused).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ code: 'idempotency_key_reused' }) });
  // The known card under a new key: its token, its later expiry, and that outcome recorded for the key.
  expect(knownAgain).toMatchObject({ status: 'fulfilled', value: { created: false, card: { token: knownFirst.card.token, expYear: 2033 } } });
  expect(await storedResponse(tenantId, known.key)).toMatchObject({ created: false, card: { token: knownFirst.card.token, expYear: 2033 } });
  expect(freshOutcomes.every((o) => o.status === 'fulfilled' && o.value.created)).toBe(true);
  // 2 before, the plug and 12 new: the reused key's number was never vaulted.
  expect(await countCards(h.db, tenantId)).toBe(15);
});

it('settles every request of a batch whose transaction failed on its own, none lost and none twice', async () => {
  let failures = 0;
  const { tokenize, tenantId } = await vaultOnItsOwnTenant({
    // The first batch claim fails as a deadlock victim's would, after the batch's cards were inserted.
    inTransaction: (tx) =>
      replacing(tx, 'claimIdempotencyKeys', (claims, ttl) =>
        failures++ === 0 ? Promise.reject(new VaultError('database_unavailable')) : tx.claimIdempotencyKeys(claims, ttl),
      ),
  });
  const requests = Array.from({ length: 10 }, (_, i) => ({ key: `fails-${i}`, pan: newPan() }));

  const outcomes = await Promise.all(requests.map((r) => tokenize(cardOf(r.pan), r.key)));

  expect(failures).toBeGreaterThanOrEqual(1);
  expect(outcomes.every((o) => o.created)).toBe(true);
  expect(new Set(outcomes.map((o) => o.card.token)).size).toBe(10);
  expect(await countCards(h.db, tenantId)).toBe(10);
  for (const r of requests) expect(await h.idempotencyRecords(tenantId, r.key)).toHaveLength(1);
});

it('replays a recorded request once its expiry has passed, and refuses the same card under a new key', async () => {
  let now = new Date('2031-12-15T00:00:00Z');
  const { tokenize } = await vaultOnItsOwnTenant({ clock: { now: () => now } });
  const pan = newPan();
  const first = await tokenize(cardOf(pan), 'before-the-month-turned');
  now = new Date('2032-01-02T00:00:00Z');

  const [retry, fresh] = await Promise.allSettled([tokenize(cardOf(pan), 'before-the-month-turned'), tokenize(cardOf(pan), 'after-the-month-turned')]);

  expect(retry).toMatchObject({ status: 'fulfilled', value: { created: true, card: { token: first.card.token } } });
  expect(fresh).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ code: 'card_expired' }) });
});
