// A CVC held for a card number does not outlive that number: the account updater's new number, or a merge, drops it.
import request from 'supertest';
import type { CvcStore } from '../../src/domain/ports';
import { MemoryCvcStore } from '../../src/store/cvc-store';
import { assembleUpdater, type UpdaterParts } from '../../src/updater/dependencies';
import { deriveNewPan } from '../../src/updater/network/simulator';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan, recordPan } from '../support/pans';
import { closingRules } from '../support/reissue-rules';

// The simulator's default rules reissue Visa's published 4242 test card (outcome new_account).
const OLD_NUMBER = recordPan('4242424242424242');
const NEW_NUMBER = recordPan(deriveNewPan(OLD_NUMBER));
const VISA_ONLY = { networks: { visa: { merchant_id: 'M-VISA-1' } } };

let h: Harness;
const cvcs = new MemoryCvcStore();

beforeAll(async () => {
  h = await buildHarness({ cvc: { store: cvcs, ttlSeconds: 600 } });
});
afterAll(async () => {
  await h.close();
  await cvcs.close();
});

/** The account updater as main.ts wires it: its changes discard CVCs in the vault's store (or in `store`). */
function updaterWith(store: Pick<CvcStore, 'discard'> = cvcs, simulatorRules?: string): UpdaterParts {
  return assembleUpdater({
    db: h.db,
    keyring: h.parts.keyring,
    tenants: h.parts.tenants,
    audit: h.parts.audit,
    log: h.log,
    cvcs: store,
    options: { network: 'simulator', simulatorRules, dropDir: h.updaterDropDir, pollSeconds: 1, lockTtlSeconds: 30, applyChunk: 50, responseTimeoutHours: 72, auditSweepSeconds: 60 },
  });
}

async function setUp(updater: UpdaterParts) {
  const { tenant, keys } = await h.tenant(['merchant', 'payments']);
  const app = h.appWith({ updater: updater.updater });
  const auth = bearer(keys.merchant!);
  expect((await request(app).put('/v1/account-updater/settings').set(auth).send(VISA_ONLY)).status).toBe(200);
  const tokenize = async (pan: string, cvc: string) => {
    const res = await request(app).post('/v1/tokens').set(auth).send(cardBody(pan, { cvc }));
    expect(res.body.cvc_held).toBe(true);
    return res.body.token as string;
  };
  const enroll = async (token: string) => expect((await request(app).put(`/v1/tokens/${token}/account-updater`).set(auth).send({ enrolled: true })).status).toBe(200);
  const refresh = (token: string) => request(app).post(`/v1/tokens/${token}/refresh`).set(auth).send();
  const detokenize = async (token: string) => {
    const res = await request(app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(res.status).toBe(200);
    return res.body.card as { number: string; cvc?: string };
  };
  const cvcHeld = async (token: string) => (await request(app).get(`/v1/tokens/${token}`).set(auth)).body.cvc_held as boolean;
  return { tenant, app, auth, tokenize, enroll, refresh, detokenize, cvcHeld };
}

describe('a card the issuer closed', () => {
  it('has its CVC discarded when a refresh closes it: detokenize never reveals it again', async () => {
    const pan = newPan('411111');
    const rules = closingRules(pan);
    try {
      const t = await setUp(updaterWith(cvcs, rules.file));
      const token = await t.tokenize(pan, '123');
      await t.enroll(token);
      const refreshed = await t.refresh(token);
      expect(refreshed.status).toBe(200);
      expect(refreshed.body.outcome).toBe('closed');
      expect(await cvcs.take(t.tenant.id, token)).toBeUndefined();
    } finally {
      rules.remove();
    }
  });
});

describe('a new card number from the account updater', () => {
  it('discards the CVC held for the old number when a real-time refresh applies it', async () => {
    const t = await setUp(updaterWith());
    const token = await t.tokenize(OLD_NUMBER, '123');
    await t.enroll(token);
    const refreshed = await t.refresh(token);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.outcome).toBe('new_account');
    expect(await t.cvcHeld(token)).toBe(false);
    const card = await t.detokenize(token);
    expect(card.number).toBe(NEW_NUMBER);
    expect(card.cvc).toBeUndefined();
  });

  it('discards it when a batch run applies it, and keeps the CVC of a card the run left alone', async () => {
    const updater = updaterWith();
    const t = await setUp(updater);
    const token = await t.tokenize(OLD_NUMBER, '123');
    await t.enroll(token);
    const untouched = await t.tokenize(recordPan('4111111111111111'), '456');
    const started = await request(t.app).post('/v1/account-updater/runs').set(t.auth).send({});
    expect(started.status).toBe(202);
    await updater.worker.tick(t.tenant.id);
    expect((await request(t.app).get(`/v1/account-updater/runs/${started.body.id}`).set(t.auth)).body.state).toBe('completed');
    const card = await t.detokenize(token);
    expect(card.number).toBe(NEW_NUMBER);
    expect(card.cvc).toBeUndefined();
    expect((await t.detokenize(untouched)).cvc).toBe('456');
  });

  it('discards the CVCs of both tokens of a merge: neither reveals the new number with a CVC', async () => {
    const t = await setUp(updaterWith());
    const updated = await t.tokenize(OLD_NUMBER, '123');
    const existing = await t.tokenize(NEW_NUMBER, '456');
    await t.enroll(updated);
    const refreshed = await t.refresh(updated);
    expect(refreshed.body.updates.map((u: { token: string; event: string }) => [u.token, u.event])).toEqual([
      [existing, 'card.merged'],
      [updated, 'card.updated'],
    ]);
    // The merged token resolves to the updated one, whose CVC was the old number's.
    for (const token of [existing, updated]) {
      const card = await t.detokenize(token);
      expect(card.number).toBe(NEW_NUMBER);
      expect(card.cvc).toBeUndefined();
    }
    // Nor is the merged token's own CVC left in memory, out of reach until it expires.
    expect(await cvcs.held(t.tenant.id, existing)).toBe(false);
  });

  it('deletes only the merged token when asked to: the card stays under the token it was merged into (as documented)', async () => {
    const t = await setUp(updaterWith());
    const updated = await t.tokenize(OLD_NUMBER, '123');
    const merged = await t.tokenize(NEW_NUMBER, '456');
    await t.enroll(updated);
    expect((await t.refresh(updated)).status).toBe(200);
    expect((await request(t.app).delete(`/v1/tokens/${merged}`).set(t.auth)).status).toBe(204);
    expect((await request(t.app).get(`/v1/tokens/${merged}`).set(t.auth)).status).toBe(404);
    expect((await t.detokenize(updated)).number).toBe(NEW_NUMBER);
    // Deleting the token it was merged into destroys the card.
    expect((await request(t.app).delete(`/v1/tokens/${updated}`).set(t.auth)).status).toBe(204);
    const [row] = await h.db.query<{ ciphertext: Buffer | null }>('SELECT ciphertext FROM cards WHERE tenant_id = $1 AND token = $2', [t.tenant.id, updated]);
    expect(row!.ciphertext).toBeNull();
  });

  it('is applied and answered all the same when the CVC cannot be discarded, and says so in the log', async () => {
    const t = await setUp(updaterWith({ discard: () => Promise.reject(new Error('the CVC store is unreachable')) }));
    const token = await t.tokenize(OLD_NUMBER, '123');
    await t.enroll(token);
    const refreshed = await t.refresh(token);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.updates).toHaveLength(1);
    expect((await t.detokenize(token)).number).toBe(NEW_NUMBER);
    await h.parts.audit.flush();
    const audited = await h.db.query('SELECT 1 FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> \'action\' = \'updater.card_update\'', [t.tenant.id]);
    expect(audited).toHaveLength(1);
    const warned = h.captured.entries().filter((e) => e.msg === 'a CVC held for a replaced or closed card could not be discarded');
    expect(warned.map((e) => e.level)).toEqual(['warn']);
  });
});
