// A transaction holds one connection of its pool; what it needs from the keyring must not take another. On a card
// pool of one connection, a keyed tokenize that needs the tenant's first data key is still answered.
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { cryptoTokenRandomness } from '../../src/crypto/random';
import { CvcHolder } from '../../src/domain/cvc';
import { Pan } from '../../src/domain/pan';
import type { Principal } from '../../src/domain/policy';
import { SYSTEM_CONTEXT } from '../../src/domain/ports';
import { Vault } from '../../src/domain/vault';
import { PgCardStore } from '../../src/store/card-store';
import { MemoryCvcStore } from '../../src/store/cvc-store';
import { openPostgres, type Db } from '../../src/store/db';
import { PgTenantStore } from '../../src/store/tenant-store';
import { TEST_DATABASE_URL } from '../support/env';
import { buildHarness, type Harness } from '../support/harness';
import { countCards } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
let cardDb: Db;
beforeAll(async () => {
  h = await buildHarness();
  // As openCardDatabase builds it, at DATABASE_POOL_SIZE=1: cards and data keys on it, the audit log on its own pool.
  cardDb = openPostgres({ url: TEST_DATABASE_URL, poolSize: 1, applicationName: 'cardvault-cards' });
});
afterAll(async () => {
  await cardDb.close();
  await h.close();
});

async function vaultOnOneConnection(maxUses: number) {
  const crypto = createCardCrypto(new Keyring(h.kms, new PgTenantStore(cardDb), { maxAgeMs: 60_000, maxUses, maxEntries: 100 }, Date.now, h.parts.audit));
  const vault = new Vault({
    cards: new PgCardStore(cardDb, cardDb),
    audit: h.parts.audit,
    cvc: new CvcHolder(new MemoryCvcStore(), crypto, 600),
    crypto,
    randomness: cryptoTokenRandomness,
    clock: { now: () => new Date() },
    idempotencyTtlSeconds: 86_400,
  });
  const { tenant } = await h.tenant([]);
  const principal: Principal = { tenant, apiKeyId: 'test', role: { name: 'test', description: '', actions: new Set(['tokenize']), detokenize: undefined } };
  const tokenize = (pan: string, key: string) =>
    vault.tokenize(principal, SYSTEM_CONTEXT, { pan: Pan.parse(pan), expMonth: 12, expYear: 2031, holderName: null, cvc: null }, 'opaque', key);
  return { tokenize, tenantId: tenant.id };
}

it('vaults the first card of a tenant with an Idempotency-Key on a card pool of one connection', async () => {
  const { tokenize, tenantId } = await vaultOnOneConnection(100_000);
  const outcome = await tokenize(newPan(), 'first-on-one-connection');
  expect(outcome.created).toBe(true);
  expect(await countCards(h.db, tenantId)).toBe(1);
});

it('vaults concurrent keyed requests that each need a new data key on a card pool of one connection', async () => {
  const { tokenize, tenantId } = await vaultOnOneConnection(1);
  const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => tokenize(newPan(), `one-connection-${i}`)));
  expect(outcomes.every((o) => o.created)).toBe(true);
  expect(await countCards(h.db, tenantId)).toBe(6);
});
