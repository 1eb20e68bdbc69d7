// Replacing a tenant's fingerprint key (`keys rotate-fingerprint`): each state, resuming, refusals, idempotent
// replays across the switch, deletes and merges during and after it. Under load: fingerprint-rotation-load.test.ts.
import request from 'supertest';
import { RetireBlockedError, type FingerprintRotationProgress } from '../../src/crypto/fingerprint-rotation';
import { deriveNewPan } from '../../src/updater/network/simulator';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan, recordPan } from '../support/pans';
import { reissueRules, type RulesFile } from '../support/reissue-rules';

jest.setTimeout(60_000);

/** Instances re-read fingerprint keys this often here (5 s in production); the command waits past twice that. */
const VIEW_MS = 150;
const SETTLE_MS = 2 * VIEW_MS + 100;

let fresh: FreshDatabase;
let h: Harness;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_fprot');
  h = await buildHarness({ db: fresh.db, fingerprintViewMs: VIEW_MS });
});
afterAll(async () => {
  await h.close();
  await fresh.drop();
});

const rotator = (batchSize = 7, onProgress?: (p: FingerprintRotationProgress) => void, on: Harness = h) =>
  on.parts.fingerprintRotation.rotator(batchSize, onProgress, SETTLE_MS);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface CardColumns {
  token: string;
  status: string;
  fingerprint: string | null;
  fingerprint_even: string | null;
}

async function columns(tenantId: string): Promise<CardColumns[]> {
  return fresh.db.query<CardColumns>('SELECT token, status, fingerprint, fingerprint_even FROM cards WHERE tenant_id = $1 ORDER BY id', [tenantId]);
}

async function keyStates(tenantId: string): Promise<Array<{ generation: number; state: string; has_key: boolean }>> {
  return fresh.db.query('SELECT generation, state, key_wrapped IS NOT NULL AS has_key FROM fingerprint_keys WHERE tenant_id = $1 ORDER BY generation', [tenantId]);
}

async function tenantWithCards(count: number, on: Harness = h) {
  const { tenant, keys } = await on.tenant(['merchant', 'payments']);
  const cards: Array<{ pan: string; token: string; fingerprint: string }> = [];
  for (let i = 0; i < count; i++) {
    const pan = newPan('411111');
    const res = await request(on.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
    expect(res.status).toBe(201);
    cards.push({ pan, token: res.body.token, fingerprint: res.body.fingerprint });
  }
  return { tenant, keys, merchant: bearer(keys.merchant!), cards };
}

it('replaces the key: new fingerprints everywhere, the old column cleared, the old key destroyed, every token kept', async () => {
  const { tenant, merchant, cards } = await tenantWithCards(30);
  // A closed card keeps its number too; a deleted one has no fingerprint to carry over.
  await fresh.db.query("UPDATE cards SET status = 'closed', closed_at = now() WHERE tenant_id = $1 AND token = $2", [tenant.id, cards[0]!.token]);
  expect((await request(h.app).delete(`/v1/tokens/${cards[1]!.token}`).set(merchant)).status).toBe(204);
  const legacy = await fresh.db.query<{ k: Buffer | null }>('SELECT fingerprint_key_wrapped AS k FROM tenants WHERE id = $1', [tenant.id]);
  expect(legacy[0]!.k).toBeNull();

  const progress: FingerprintRotationProgress[] = [];
  const started = Date.now();
  const done = await rotator(7, (p) => progress.push(p)).rotate(tenant.id);
  // Three waits past the view age, and no more.
  expect(Date.now() - started).toBeGreaterThanOrEqual(3 * SETTLE_MS - 50);
  expect(done).toMatchObject({ tenantId: tenant.id, generation: 2, backfilled: 29, cleared: 29 });
  expect(progress.filter((p) => p.phase === 'backfill').at(-1)).toEqual({ phase: 'backfill', done: 29, total: 29 });
  expect(progress.filter((p) => p.phase === 'clear').at(-1)).toEqual({ phase: 'clear', done: 29, total: 29 });

  const rows = await columns(tenant.id);
  for (const row of rows.filter((r) => r.status !== 'deleted')) {
    expect(row.fingerprint).toBeNull();
    expect(row.fingerprint_even).toMatch(/^fp_/);
  }
  expect(rows.find((r) => r.status === 'deleted')).toMatchObject({ fingerprint: null, fingerprint_even: null });
  expect(await keyStates(tenant.id)).toEqual([
    { generation: 1, state: 'retired', has_key: false },
    { generation: 2, state: 'current', has_key: true },
  ]);

  // Same tokens, new fingerprints: read, and found again by number.
  const read = await request(h.app).get(`/v1/tokens/${cards[2]!.token}`).set(merchant);
  expect(read.body.fingerprint).not.toBe(cards[2]!.fingerprint);
  expect(read.body.fingerprint).toBe(rows[2]!.fingerprint_even);
  for (const card of cards.slice(2, 8)) {
    const again = await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(card.pan));
    expect(again.status).toBe(200);
    expect(again.body.token).toBe(card.token);
  }
  const closedAgain = await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(cards[0]!.pan));
  expect(closedAgain.body).toMatchObject({ token: cards[0]!.token, status: 'closed' });

  // The next rotation reuses the odd column, now empty.
  expect(await rotator(50).rotate(tenant.id)).toMatchObject({ generation: 3, backfilled: 29, cleared: 29 });
  for (const row of (await columns(tenant.id)).filter((r) => r.status !== 'deleted')) {
    expect(row.fingerprint).toMatch(/^fp_/);
    expect(row.fingerprint_even).toBeNull();
  }
  expect((await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(cards[5]!.pan))).body.token).toBe(cards[5]!.token);

  const actions = await fresh.db.query<{ action: string; details: Record<string, unknown> }>(
    `SELECT event::jsonb ->> 'action' AS action, event::jsonb -> 'details' AS details FROM audit_events
     WHERE event::jsonb ->> 'tenant' = $1 AND event::jsonb ->> 'action' LIKE 'key.fingerprint_rotation.%' ORDER BY seq`,
    [tenant.id],
  );
  const steps = ['start', 'backfill', 'switch', 'retire', 'complete'].map((s) => `key.fingerprint_rotation.${s}`);
  expect(actions.map((a) => a.action)).toEqual([...steps, ...steps]);
  expect(actions[0]!.details).toMatchObject({ from_generation: 1, generation: 2 });
  expect(actions[4]!.details).toMatchObject({ generation: 2, retired_generation: 1, cleared: 29 });
});

it('clears the old column along the cards in id order, each batch after the last, not from the start again', async () => {
  const { tenant } = await tenantWithCards(10);
  const clears = jest.spyOn(h.parts.fingerprintRotation.store, 'clearColumn');
  try {
    expect(await rotator(3).rotate(tenant.id)).toMatchObject({ generation: 2, cleared: 10 });
    const cursors = clears.mock.calls.map((call) => call[3]);
    // Four batches of up to 3, then one that finds nothing after the last card.
    expect(cursors[0]).toBeUndefined();
    const ids = cursors.slice(1).map(Number);
    expect(ids).toHaveLength(4);
    for (let i = 1; i < ids.length; i++) expect(ids[i]!).toBeGreaterThan(ids[i - 1]!);
  } finally {
    clears.mockRestore();
  }
  expect((await columns(tenant.id)).every((row) => row.fingerprint === null)).toBe(true);
});

it('writes and looks up by the columns of each state: prepare, switch, retire', async () => {
  const { tenant, merchant } = await tenantWithCards(0);
  const store = h.parts.fingerprintRotation.store;
  const vault = async () => {
    await sleep(VIEW_MS + 20);
    const pan = newPan('411111');
    const res = await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(pan));
    expect(res.status).toBe(201);
    const row = (await columns(tenant.id)).find((r) => r.token === res.body.token)!;
    return { row, shown: res.body.fingerprint as string };
  };

  const steady = await vault();
  expect(steady.row.fingerprint_even).toBeNull();
  expect(steady.shown).toBe(steady.row.fingerprint);
  // Stepping by hand skips the backfill: a card from before prepare would keep only the column retired below.
  expect((await request(h.app).delete(`/v1/tokens/${steady.row.token}`).set(merchant)).status).toBe(204);

  const { wrapped } = await h.parts.kms.generateDataKey({ tenantId: tenant.id, purpose: 'fingerprint' });
  expect(await store.insertNext(tenant.id, 2, wrapped)).toBe(true);
  const prepare = await vault();
  expect(prepare.row.fingerprint_even).toMatch(/^fp_/);
  expect(prepare.shown).toBe(prepare.row.fingerprint);

  await store.switchKeys(tenant.id, 1, 2);
  const switched = await vault();
  expect(switched.row.fingerprint).toMatch(/^fp_/);
  expect(switched.shown).toBe(switched.row.fingerprint_even);
  // A number vaulted in prepare is found by its new-generation fingerprint.
  const found = await request(h.app).get(`/v1/tokens/${prepare.row.token}`).set(merchant);
  expect(found.body.fingerprint).toBe(prepare.row.fingerprint_even);

  await store.setState(tenant.id, 1, 'previous', 'retiring');
  const retiring = await vault();
  expect(retiring.row.fingerprint).toBeNull();
  expect(retiring.shown).toBe(retiring.row.fingerprint_even);

  // The command picks the rotation up where these steps left it.
  expect(await rotator().rotate(tenant.id)).toMatchObject({ generation: 2 });
  expect(await keyStates(tenant.id)).toEqual([
    { generation: 1, state: 'retired', has_key: false },
    { generation: 2, state: 'current', has_key: true },
  ]);
});

it('resumes where it stopped: a run interrupted after one backfill batch is finished by the next', async () => {
  const { tenant, merchant, cards } = await tenantWithCards(20);
  let batches = 0;
  const interrupted = rotator(5, (p) => {
    if (p.phase === 'backfill' && ++batches === 1) throw new Error('operator pressed ctrl-c');
  });
  await expect(interrupted.rotate(tenant.id)).rejects.toThrow('ctrl-c');
  expect((await keyStates(tenant.id)).map((k) => k.state)).toEqual(['current', 'next']);
  expect((await columns(tenant.id)).filter((r) => r.fingerprint_even).length).toBe(5);
  // Still one token per number meanwhile.
  expect((await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(cards[0]!.pan))).body.token).toBe(cards[0]!.token);

  const done = await rotator(5).rotate(tenant.id);
  expect(done).toMatchObject({ generation: 2, backfilled: 20, cleared: 20 });
  const starts = await fresh.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE event::jsonb ->> 'tenant' = $1 AND event::jsonb ->> 'action' = 'key.fingerprint_rotation.start'",
    [tenant.id],
  );
  expect(starts[0]!.n).toBe(1);
});

it('refuses to start a second rotation of a tenant while one is open', async () => {
  const { tenant } = await tenantWithCards(3);
  const both = await Promise.allSettled([rotator().rotate(tenant.id), rotator().rotate(tenant.id)]);
  const failed = both.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  expect(failed).toHaveLength(1);
  // The loser either lost the start, or resumed the same rotation and lost a step's compare-and-swap.
  expect(String(failed[0]!.reason)).toMatch(/started meanwhile|changed (during the switch|meanwhile)/);
  expect(both.find((r) => r.status === 'fulfilled')).toMatchObject({ value: { generation: 2 } });
  expect(await keyStates(tenant.id)).toHaveLength(2);

  // Even bypassing the command, the schema keeps one open rotation per tenant.
  const { wrapped } = await h.parts.kms.generateDataKey({ tenantId: tenant.id, purpose: 'fingerprint' });
  expect(await h.parts.fingerprintRotation.store.insertNext(tenant.id, 3, wrapped)).toBe(true);
  expect(await h.parts.fingerprintRotation.store.insertNext(tenant.id, 4, wrapped)).toBe(false);
});

it('waits for idempotency records keyed by the old key before retiring it; replays across the switch return the same token', async () => {
  const { tenant, merchant } = await tenantWithCards(2);
  const pan = newPan('411111');
  const first = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-1').send(cardBody(pan));
  expect(first.status).toBe(201);

  const blocked = await rotator().rotate(tenant.id).catch((err: unknown) => err);
  expect(blocked).toBeInstanceOf(RetireBlockedError);
  expect(blocked).toMatchObject({ generation: 1, records: 1 });
  expect((blocked as RetireBlockedError).lastExpiresAt.getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
  expect((await keyStates(tenant.id)).map((k) => k.state)).toEqual(['previous', 'current']);

  // Switched: the replay's digest was made with generation 1, and is checked with it.
  await sleep(VIEW_MS + 20);
  const replay = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-1').send(cardBody(pan));
  expect(replay.body.token).toBe(first.body.token);
  const reused = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-1').send(cardBody(newPan('411111')));
  expect(reused.body.code).toBe('idempotency_key_reused');
  const second = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-2').send(cardBody(newPan('411111')));
  expect(second.status).toBe(201);
  // Each key found by its digests under both generations, as instances in this overlap find it; never stored as sent.
  const [order1] = await h.idempotencyRecords(tenant.id, 'order-1', [1, 2]);
  const [order2] = await h.idempotencyRecords(tenant.id, 'order-2', [1, 2]);
  expect(order1).toMatchObject({ key: null, digest_generation: 1 });
  expect(order1!.key_digest_odd).not.toBeNull(); // made in steady state: generation 1's digest only
  expect(order1!.key_digest_even).toBeNull();
  expect(order2).toMatchObject({ key: null, digest_generation: 2 });
  expect(order2!.key_digest_odd).not.toBeNull(); // made in switch: both, so either neighbour state finds it
  expect(order2!.key_digest_even).not.toBeNull();

  // Blocked again until it expires; then the same command finishes.
  await expect(rotator().rotate(tenant.id)).rejects.toBeInstanceOf(RetireBlockedError);
  await fresh.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key_digest_odd = $1", [order1!.key_digest_odd]);
  expect(await rotator().rotate(tenant.id)).toMatchObject({ generation: 2 });
  const replay2 = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-2').send(cardBody(newPan('411111')));
  expect(replay2.body.code).toBe('idempotency_key_reused');
  const expiredTakenOver = await request(h.app).post('/v1/tokens').set(merchant).set('Idempotency-Key', 'order-1').send(cardBody(pan));
  expect(expiredTakenOver.body.token).toBe(first.body.token);
});

it('clears both fingerprints of a card deleted during the rotation; its number can be vaulted again, once', async () => {
  const { tenant, merchant, cards } = await tenantWithCards(12);
  let meanwhile: Promise<void> | undefined;
  let revaulted: string | undefined;
  const done = await rotator(4, (p) => {
    if (p.phase !== 'backfill' || meanwhile) return;
    // Delete one card already backfilled and one not yet, then vault the first number again.
    meanwhile = (async () => {
      for (const card of [cards[0]!, cards[11]!]) expect((await request(h.app).delete(`/v1/tokens/${card.token}`).set(merchant)).status).toBe(204);
      revaulted = (await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(cards[0]!.pan))).body.token;
    })();
  }).rotate(tenant.id);
  await meanwhile;
  expect(done.generation).toBe(2);
  const rows = await columns(tenant.id);
  for (const token of [cards[0]!.token, cards[11]!.token]) {
    expect(rows.find((r) => r.token === token)).toMatchObject({ status: 'deleted', fingerprint: null, fingerprint_even: null });
  }
  expect(revaulted).toBeDefined();
  expect(revaulted).not.toBe(cards[0]!.token);
  expect((await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(cards[0]!.pan))).body.token).toBe(revaulted);
  for (const row of rows.filter((r) => r.status === 'active')) expect(row).toMatchObject({ fingerprint: null, fingerprint_even: expect.stringMatching(/^fp_/) });
});

describe('the account updater after a rotation', () => {
  let u: Harness;
  let rules: RulesFile;
  const oldPan = newPan('411111');
  const reissued = recordPan(deriveNewPan(oldPan));

  beforeAll(async () => {
    rules = reissueRules(oldPan);
    u = await buildHarness({ db: fresh.db, fingerprintViewMs: VIEW_MS, updater: { simulatorRules: rules.file } });
  });
  afterAll(async () => {
    await u.close();
    rules.remove();
  });

  it('merges a card updated to a number the tenant already holds, by the new generation', async () => {
    const { tenant, keys } = await u.tenant(['merchant', 'payments']);
    const auth = bearer(keys.merchant!);
    expect((await request(u.app).put('/v1/account-updater/settings').set(auth).send({ networks: { visa: { merchant_id: 'M-VISA-1' } } })).status).toBe(200);
    const updated = (await request(u.app).post('/v1/tokens').set(auth).send(cardBody(oldPan))).body.token as string;
    const existing = (await request(u.app).post('/v1/tokens').set(auth).send(cardBody(reissued))).body.token as string;
    expect(await rotator(10, undefined, u).rotate(tenant.id)).toMatchObject({ generation: 2 });

    await request(u.app).put(`/v1/tokens/${updated}/account-updater`).set(auth).send({ enrolled: true });
    const refreshed = await request(u.app).post(`/v1/tokens/${updated}/refresh`).set(auth).send();
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.updates.map((x: any) => [x.token, x.event])).toEqual([[existing, 'card.merged'], [updated, 'card.updated']]);
    const rows = await columns(tenant.id);
    expect(rows.find((r) => r.token === existing)).toMatchObject({ status: 'merged', fingerprint: null, fingerprint_even: null });
    expect(rows.find((r) => r.token === updated)).toMatchObject({ status: 'active', fingerprint: null, fingerprint_even: expect.stringMatching(/^fp_/) });
    const again = await request(u.app).post('/v1/tokens').set(auth).send(cardBody(reissued));
    expect(again.body.token).toBe(updated);
    const detokenized = await request(u.app).post(`/v1/tokens/${existing}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(detokenized.body.card.number).toBe(reissued);
  });
});
