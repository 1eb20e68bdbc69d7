// Down migrations refuse rather than silently destroy card-on-file state: 0008 while a card is enrolled in the
// account updater, 0009 while the updater has runs, 0001-0005 while they hold tenants, data keys, cards or the
// audit log. Nothing is reverted by a refused down.
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { eventPieces } from '../../src/audit/event';
import { PgAuditStore } from '../../src/store/audit-store';
import { MIGRATIONS_DIR, migrateDown, pendingMigrations } from '../../src/store/migrate';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let fresh: FreshDatabase;
let h: Harness;
beforeAll(async () => {
  fresh = await freshDatabase('cardvault_down_guards');
  h = await buildHarness({ db: fresh.db, updater: { network: 'file-drop' } });
});
afterAll(async () => {
  await h.close();
  await fresh.drop();
});

it('refuses to revert 0008 while a card is enrolled, and 0009 while the updater has a run, reverting nothing', async () => {
  const { keys } = await h.tenant(['merchant']);
  const auth = bearer(keys.merchant!);
  expect((await request(h.app).put('/v1/account-updater/settings').set(auth).send({ networks: { visa: { merchant_id: 'M-1' } } })).status).toBe(200);
  const token = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(newPan('411111')))).body.token as string;
  expect((await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(auth).send({ enrolled: true })).status).toBe(200);

  await expect(migrateDown(fresh.db, { to: '0007_client_sessions' })).rejects.toThrow(/reverting 0008 would destroy/);
  expect(await pendingMigrations(fresh.db)).toEqual([]);

  expect((await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).status).toBe(202);
  await expect(migrateDown(fresh.db, { to: '0008_card_lifecycle' })).rejects.toThrow(/reverting 0009 would destroy/);
  expect(await pendingMigrations(fresh.db)).toEqual([]);
  const [card] = await fresh.db.query<{ enrolled: boolean }>('SELECT updater_enrolled_at IS NOT NULL AS enrolled FROM cards WHERE token = $1', [token]);
  expect(card!.enrolled).toBe(true);
});

it('refuses to revert 0005 while the audit log has an event, keeping the log and every migration', async () => {
  const own = await freshDatabase('cardvault_down_guards_audit');
  try {
    const time = new Date('2026-11-01T00:00:00Z');
    const input = { tenantId: null, principal: 'system', action: 'service.start', outcome: 'success' } as const;
    await new PgAuditStore(own.db).appendInOneStatement([{ pieces: eventPieces(input, time), tenantId: null, recordedAt: time }]);

    await expect(migrateDown(own.db, { to: '0004_idempotency_keys' })).rejects.toThrow(/reverting 0005 would destroy/);
    expect(await pendingMigrations(own.db)).toEqual([]);
    const [count] = await own.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events');
    expect(count!.n).toBe(1);
  } finally {
    await own.drop();
  }
});

describe('on a database that holds cards', () => {
  let cards: FreshDatabase;
  let vault: Harness;
  beforeAll(async () => {
    cards = await freshDatabase('cardvault_down_guards_cards');
    vault = await buildHarness({ db: cards.db });
  });
  afterAll(async () => {
    await vault.close();
    await cards.drop();
  });

  it('refuses to revert 0005, 0003, 0002 or 0001 while they hold the audit log, cards, data keys or tenants, reverting nothing', async () => {
    const { keys } = await vault.tenant(['merchant', 'payments']);
    const pan = newPan('411111');
    const token = (await request(vault.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan))).body.token as string;
    await vault.parts.audit.flush();

    // `cardvault migrate --down --all`: every down runs in one transaction, so the first refusal keeps everything.
    await expect(migrateDown(cards.db)).rejects.toThrow(/reverting 0005 would destroy/);
    expect(await pendingMigrations(cards.db)).toEqual([]);
    for (const [name, refusal] of [
      ['0003_cards', /reverting 0003 would destroy/],
      ['0002_data_keys', /reverting 0002 would destroy/],
      ['0001_tenants', /reverting 0001 would destroy/],
    ] as const) {
      const down = fs.readFileSync(path.join(MIGRATIONS_DIR, `${name}.down.sql`), 'utf8');
      await expect(cards.db.transaction((tx) => tx.exec(down))).rejects.toThrow(refusal);
    }
    const revealed = await request(vault.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(revealed.body.card.number).toBe(pan);
  });
});

it('refuses to revert 0020 while an aborted key rotation is recorded (before 0020 it would name the active KMS key), reverting nothing', async () => {
  await fresh.db.query(
    "INSERT INTO key_rotations (generation, kms_key_id, state, reencrypt_cards, finished_at) SELECT COALESCE(max(generation), 0) + 1, 'local:0000000000000000', 'aborted', false, now() FROM key_rotations",
  );
  try {
    const down = fs.readFileSync(path.join(MIGRATIONS_DIR, '0020_key_rotation_abort.down.sql'), 'utf8');
    await expect(fresh.db.transaction((tx) => tx.exec(down))).rejects.toThrow(/cannot tell from an active one/);
    expect(await pendingMigrations(fresh.db)).toEqual([]);
    expect(await h.parts.keyRotation.store.latest()).toBeUndefined();
  } finally {
    await fresh.db.query("DELETE FROM key_rotations WHERE state = 'aborted'");
  }
});
