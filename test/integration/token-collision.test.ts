import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { luhnValid, Pan } from '../../src/domain/pan';
import type { Principal } from '../../src/domain/policy';
import { SYSTEM_CONTEXT, systemClock } from '../../src/domain/ports';
import type { TokenRandomness } from '../../src/domain/token';
import { Vault } from '../../src/domain/vault';
import { PgCardStore } from '../../src/store/card-store';
import { PgTenantStore } from '../../src/store/tenant-store';
import { buildHarness, type Harness } from '../support/harness';
import { recordPan } from '../support/pans';
import { CvcHolder } from '../../src/domain/cvc';
import { MemoryCvcStore } from '../../src/store/cvc-store';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

/** Hands out scripted middles in order, then repeats the last one forever. */
function scripted(middles: string[]): TokenRandomness {
  let i = 0;
  return { digits: () => middles[Math.min(i++, middles.length - 1)]!, opaqueId: () => 'unused-opaque-id-000' };
}

async function vaultWith(randomness: TokenRandomness) {
  const tenants = new PgTenantStore(h.db);
  const keyring = new Keyring(h.kms, tenants, { maxAgeMs: 60_000, maxUses: 1000, maxEntries: 100 });
  const vault = new Vault({ cards: new PgCardStore(h.db, h.db), audit: h.parts.audit, cvc: new CvcHolder(new MemoryCvcStore(), createCardCrypto(keyring), 600), crypto: createCardCrypto(keyring), randomness, clock: systemClock, idempotencyTtlSeconds: 86_400 });
  const { tenant } = await h.tenant([]);
  const principal: Principal = { tenant, apiKeyId: 'test', role: { name: 'test', description: '', actions: new Set(['tokenize']), detokenize: undefined } };
  return { vault, principal };
}

/** A Luhn-valid 16-digit PAN 411111 ‖ middle ‖ 111 ‖ check digit. */
function panWith(middle: string): string {
  for (let check = 0; check < 10; check += 1) {
    const candidate = `411111${middle}111${check}`;
    if (luhnValid(candidate)) return candidate;
  }
  throw new Error('unreachable: one check digit always fits');
}

/** A token middle for these PANs that fails Luhn, as the generator demands. */
function tokenMiddle(from: number, last4: string): string {
  for (let n = from; ; n += 1) {
    const middle = String(n).padStart(6, '0');
    if (!luhnValid(`411111${middle}${last4}`)) return middle;
  }
}

// Two PANs sharing BIN and last 4, so their bin6_last4 tokens can collide.
const firstDigits = panWith('000000');
const secondDigits = Array.from({ length: 100 }, (_, n) => panWith(String(n + 1).padStart(6, '0'))).find((d) => d.slice(-4) === firstDigits.slice(-4))!;
const first = Pan.parse(recordPan(firstDigits));
const second = Pan.parse(recordPan(secondDigits));
const COLLIDING = tokenMiddle(123450, first.last4);
const FREE = tokenMiddle(987650, first.last4);

const card = (pan: Pan) => ({ pan, expMonth: 12, expYear: 2031, holderName: null, cvc: null });

it('draws again when a new token collides with another card of the tenant', async () => {
  expect(first.last4).toBe(second.last4);
  const { vault, principal } = await vaultWith(scripted([COLLIDING, COLLIDING, COLLIDING, FREE]));
  const a = await vault.tokenize(principal, SYSTEM_CONTEXT, card(first), 'bin6_last4');
  const b = await vault.tokenize(principal, SYSTEM_CONTEXT, card(second), 'bin6_last4');
  expect(a.card.token).toBe(`411111${COLLIDING}${first.last4}`);
  expect(b.created).toBe(true);
  expect(b.card.token).toBe(`411111${FREE}${second.last4}`);
});

it('gives up with token_space_exhausted after a bounded number of collisions, writing nothing', async () => {
  const { vault, principal } = await vaultWith(scripted([COLLIDING]));
  const a = await vault.tokenize(principal, SYSTEM_CONTEXT, card(first), 'bin6_last4');
  await expect(vault.tokenize(principal, SYSTEM_CONTEXT, card(second), 'bin6_last4')).rejects.toMatchObject({ code: 'token_space_exhausted', status: 503 });
  const rows = await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1', [principal.tenant.id]);
  expect(rows[0]!.n).toBe(1);
  expect(a.created).toBe(true);
});
