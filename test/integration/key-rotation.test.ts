// KMS key rotation under load: re-wrapping every key, re-sealing every card, two instances, and the old key retired,
// in one run: the command waits for every instance to pick the rotation up, and re-wraps what lands late.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DisableKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import request from 'supertest';
import { createAwsKms } from '../../src/crypto/aws-kms';
import { addLocalKmsKey, openLocalKms } from '../../src/crypto/local-kms';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { KeyRotator, RewrapIncompleteError, type RotationProgress } from '../../src/crypto/key-rotation';
import type { AuditInput, Kms, TransactionalAuditTrail } from '../../src/domain/ports';
import type { Db, Queryable } from '../../src/store/db';
import { PgKeyRotationStore } from '../../src/store/key-rotation-store';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { createSymmetricKey, startMoto, TEST_CREDENTIALS, TEST_REGION, type MotoServer } from '../support/moto';
import { newPan } from '../support/pans';

jest.setTimeout(120_000);

const WRAPPED = [
  ['data_keys', 'kms_key_id'],
  ['fingerprint_keys', 'kms_key_id'],
  ['signing_keys', 'kms_key_id'],
  ['encryption_keys', 'kms_key_id'],
] as const;

async function wrappingKeys(db: FreshDatabase['db']): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [table, column] of WRAPPED) {
    out[table] = (await db.query<{ k: string }>(`SELECT DISTINCT ${column} AS k FROM ${table} ORDER BY 1`)).map((r) => r.k);
  }
  return out;
}

async function vaultCards(h: Harness, key: string, count: number): Promise<Map<string, string>> {
  const cards = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const pan = newPan(i % 2 ? '411111' : '555555');
    const res = await request(h.app).post('/v1/tokens').set(bearer(key)).send(cardBody(pan));
    cards.set(res.body.token, pan);
  }
  return cards;
}

async function expectAllDetokenize(h: Harness, key: string, cards: Map<string, string>): Promise<void> {
  for (const [token, pan] of cards) {
    const res = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(key)).send({ purpose: 'authorization' });
    expect(res.status).toBe(200);
    expect(res.body.card.number).toBe(pan);
  }
}

/** The wait the tests give instances to poll: long enough for what they do meanwhile, short enough to run often. */
const SETTLE_MS = 2000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rows in any table holding a wrapped key that are not wrapped under `kmsKeyId` (tenants: the legacy copies). */
async function notUnder(db: FreshDatabase['db'], kmsKeyId: string): Promise<number> {
  let n = 0;
  for (const [table, column] of [...WRAPPED, ['tenants', 'fingerprint_kms_key_id']] as const) {
    n += (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${column} <> $1`, [kmsKeyId]))[0]!.n;
  }
  return n;
}

/** A vault over `db` whose KMS holds only the newest key of the file: it opens only what the rotation moved. */
async function newestKeyOnly(db: FreshDatabase['db'], dir: string, keyFile: string): Promise<Harness> {
  const onlyNew = path.join(dir, `only-new-${Date.now()}.key`);
  const all = fs.readFileSync(keyFile);
  fs.writeFileSync(onlyNew, all.subarray(all.length - 32), { mode: 0o600 });
  return buildHarness({ db, kms: await openLocalKms({ keyFile: onlyNew }) });
}

async function rotationActions(db: FreshDatabase['db'], generation: number): Promise<string[]> {
  const rows = await db.query<{ action: string }>(
    `SELECT event::jsonb ->> 'action' AS action FROM audit_events
     WHERE event::jsonb ->> 'action' LIKE 'key.rotation.%' AND (event::jsonb -> 'details' ->> 'generation')::int = $1 ORDER BY seq`,
    [generation],
  );
  return rows.map((r) => r.action);
}

const ROTATION_STEPS = ['key.rotation.start', 'key.rotation.rewrap', 'key.rotation.reencrypt', 'key.rotation.complete'];

/** Each rotation's recorded steps, and the steps its state says were taken: one list each, generation by generation. */
async function recordedAndTaken(db: FreshDatabase['db']): Promise<{ recorded: string[][]; taken: string[][] }> {
  const rotations = await db.query<{ generation: number; state: string; reencrypt_cards: boolean }>(
    'SELECT generation::int, state, reencrypt_cards FROM key_rotations ORDER BY generation',
  );
  const recorded: string[][] = [];
  const taken: string[][] = [];
  for (const r of rotations) {
    recorded.push(await rotationActions(db, r.generation));
    const past = new Set(['key.rotation.start']);
    if (r.state !== 'rewrapping') past.add('key.rotation.rewrap');
    if (r.state === 'completed') past.add('key.rotation.complete');
    if (r.state === 'completed' && r.reencrypt_cards) past.add('key.rotation.reencrypt');
    taken.push(ROTATION_STEPS.filter((step) => past.has(step)));
  }
  return { recorded, taken };
}

describe('with the local key file', () => {
  let fresh: FreshDatabase;
  let dir: string;
  let keyFile: string;
  let h: Harness;

  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_rotation');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-rotation-'));
    keyFile = path.join(dir, 'kms.key');
    h = await buildHarness({ db: fresh.db, kms: await openLocalKms({ keyFile }) });
  });
  afterAll(async () => {
    await h.close();
    await fresh.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rotates under load in one run: an instance that picks the rotation up on its poll, during the wait, leaves nothing under the old key', async () => {
    const { keys } = await h.tenant(['merchant', 'payments']);
    const cards = await vaultCards(h, keys.merchant!, 150);
    // A second instance over the same database: it learns of the rotation only when it polls.
    const other = await buildHarness({ db: fresh.db, kms: await openLocalKms({ keyFile }) });
    await other.parts.keyRotation.sync();
    const generation = ((await h.parts.keyRotation.store.latest())?.generation ?? 0) + 1;

    let running = true;
    let failures = 0;
    let requests = 0;
    const tokens = [...cards.keys()];
    const load = Array.from({ length: 6 }, async (_, worker) => {
      for (let i = 0; running; i++) {
        const app = (worker + i) % 2 ? h.app : other.app;
        if (i % 2 === 0) {
          const pan = newPan('411111');
          const res = await request(app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
          if (res.status === 201) cards.set(res.body.token, pan);
          else failures += 1;
        } else {
          const token = tokens[(worker * 31 + i) % tokens.length]!;
          const res = await request(app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
          if (res.status !== 200 || res.body.card.number !== cards.get(token)) failures += 1;
        }
        requests += 1;
      }
    });
    // New tenants on the other instance: a fingerprint key and a first data key each, under whatever key it has.
    const newTenants: Array<{ payments: string; cards: Map<string, string> }> = [];
    const onboarding = (async () => {
      while (running) {
        const tenant = await other.tenant(['merchant', 'payments']);
        const pan = newPan('555555');
        const res = await request(other.app).post('/v1/tokens').set(bearer(tenant.keys.merchant!)).send(cardBody(pan));
        if (res.status === 201) newTenants.push({ payments: tenant.keys.payments!, cards: new Map([[res.body.token as string, pan]]) });
        else failures += 1;
      }
    })();

    const newKey = await addLocalKmsKey(keyFile);
    const progress: RotationProgress[] = [];
    let waited = 0;
    let polled: Promise<{ lateKeys: number; lateCards: number }> | undefined;
    const rotator = h.parts.keyRotation.rotator(20, (p) => progress.push(p), SETTLE_MS, (waitMs) => {
      waited = waitMs;
      // The other instance polls halfway through the wait; until then it writes under the old key.
      polled = sleep(waitMs / 2).then(async () => {
        const since = "(SELECT started_at FROM key_rotations WHERE generation = $2)";
        const [lateKeys] = await fresh.db.query<{ n: number }>(
          `SELECT (SELECT count(*) FROM data_keys WHERE kms_key_id <> $1 AND created_at >= ${since})
                + (SELECT count(*) FROM fingerprint_keys WHERE kms_key_id <> $1 AND created_at >= ${since}) AS n`,
          [newKey, generation],
        );
        const [lateCards] = await fresh.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM cards c JOIN data_keys d ON d.id = c.data_key_id WHERE d.created_at < ${since.replace('$2', '$1')}
           AND c.created_at >= ${since.replace('$2', '$1')}`,
          [generation],
        );
        await other.parts.keyRotation.sync();
        return { lateKeys: Number(lateKeys!.n), lateCards: lateCards!.n };
      });
    });
    const rotation = await rotator.rotate(newKey, { reencryptCards: true }, () => h.parts.keyRotation.sync());
    const late = await polled!;
    await sleep(300);
    running = false;
    await Promise.all([...load, onboarding]);

    // The wait did cover writes under the old key after the rotation started: keys, and cards under an old data key.
    expect(waited).toBeGreaterThan(SETTLE_MS / 2);
    expect(late.lateKeys).toBeGreaterThan(0);
    expect(late.lateCards).toBeGreaterThan(0);
    expect(failures).toBe(0);
    expect(requests).toBeGreaterThan(50);
    expect(rotation).toMatchObject({ generation, kmsKeyId: newKey, state: 'completed' });
    expect(rotation.rewrapped).toBeGreaterThan(0);
    expect(rotation.reencrypted).toBeGreaterThanOrEqual(150);
    expect(progress.some((p) => p.phase === 'rewrap')).toBe(true);
    const lastReseal = progress.filter((p) => p.phase === 'reencrypt').at(-1)!;
    expect(lastReseal.done).toBe(lastReseal.total);

    // One run, and nothing is left under the old key: no wrapped key, no card under a data key from before it.
    const wrapped = await wrappingKeys(fresh.db);
    for (const [table] of WRAPPED) expect(wrapped[table]).toEqual([newKey]);
    expect(await notUnder(fresh.db, newKey)).toBe(0);
    // Nor under a data key another KMS key generated, which the other instance did after the start (late.lateKeys).
    const stale = await fresh.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cards c JOIN data_keys d ON d.id = c.data_key_id
       WHERE d.created_at < (SELECT started_at FROM key_rotations WHERE generation = $1) OR d.generated_under <> $2`,
      [generation, newKey],
    );
    expect(stale[0]!.n).toBe(0);

    // A KMS holding only the new key opens everything: the old key can be destroyed.
    expect(newTenants.length).toBeGreaterThan(0);
    const cold = await newestKeyOnly(fresh.db, dir, keyFile);
    try {
      await expectAllDetokenize(cold, keys.payments!, cards);
      for (const tenant of newTenants) await expectAllDetokenize(cold, tenant.payments, tenant.cards);
    } finally {
      await cold.close();
      await other.close();
    }
    expect(await rotationActions(fresh.db, generation)).toEqual(['key.rotation.start', 'key.rotation.rewrap', 'key.rotation.reencrypt', 'key.rotation.complete']);
  });

  it.each([false, true])("re-wraps a tenant's keys when its first card is sealed, after the rotation started, by an instance that has not polled yet (re-sealing cards: %s)", async (reencryptCards) => {
    const own = await freshDatabase('cardvault_rotation_late');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    const lagging = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      await lagging.parts.keyRotation.sync();
      const newKey = await addLocalKmsKey(keyFile);
      let first: Promise<{ tenantId: string; payments: string; token: string; pan: string; status: number; sealedUnder: string[]; lateKeyId: string }> | undefined;
      const rotation = await rotating.parts.keyRotation.rotator(20, undefined, SETTLE_MS).rotate(newKey, { reencryptCards }, async () => {
        await rotating.parts.keyRotation.sync();
        // The rotation row exists. Half a second later, before the lagging instance polls, a new tenant seals its first card there.
        first = (async () => {
          await sleep(500);
          const { tenant, keys } = await lagging.tenant(['merchant', 'payments']);
          const pan = newPan('411111');
          const res = await request(lagging.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
          const sealedUnder = await own.db.query<{ id: string; k: string }>('SELECT id, kms_key_id AS k FROM data_keys WHERE tenant_id = $1', [tenant.id]);
          await lagging.parts.keyRotation.sync();
          const token = res.body.token as string;
          return { tenantId: tenant.id, payments: keys.payments!, token, pan, status: res.status, sealedUnder: sealedUnder.map((r) => r.k), lateKeyId: sealedUnder[0]!.id };
        })();
      });
      const late = await first!;
      expect(late.status).toBe(201);
      expect(late.sealedUnder).toHaveLength(1);
      expect(late.sealedUnder[0]).not.toBe(newKey);

      expect(rotation).toMatchObject({ kmsKeyId: newKey, state: 'completed' });
      const tenantKeys = await own.db.query<{ k: string }>(
        `SELECT kms_key_id AS k FROM data_keys WHERE tenant_id = $1 UNION ALL SELECT kms_key_id FROM fingerprint_keys WHERE tenant_id = $1`,
        [late.tenantId],
      );
      expect(new Set(tenantKeys.map((r) => r.k))).toEqual(new Set([newKey]));
      expect(await notUnder(own.db, newKey)).toBe(0);
      if (reencryptCards) {
        // Its data key was generated under the old KMS key, though after the rotation started: the card is sealed again.
        const [card] = await own.db.query<{ data_key_id: string }>('SELECT data_key_id FROM cards WHERE tenant_id = $1 AND token = $2', [late.tenantId, late.token]);
        expect(card!.data_key_id).not.toBe(late.lateKeyId);
      }
      const cold = await newestKeyOnly(own.db, dir, keyFile);
      try {
        await expectAllDetokenize(cold, late.payments, new Map([[late.token, late.pan]]));
      } finally {
        await cold.close();
      }
    } finally {
      await lagging.close();
      await rotating.close();
      await own.drop();
    }
  });

  it('repeats the re-wrap pass for keys written under the old KMS key meanwhile, and after 3 passes asks to be run again', async () => {
    const own = await freshDatabase('cardvault_rotation_passes');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    const lagging = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      await lagging.parts.keyRotation.sync();
      const { tenant, keys } = await rotating.tenant(['merchant']);
      await vaultCards(rotating, keys.merchant!, 1);
      // While it has writes left, the lagging instance writes a key under its (old) KMS key for each one re-wrapped:
      // a new tenant's fingerprint key (a table later in the same pass) or a data key (a table the pass is done with).
      let lateWrites = 0;
      const inner = rotating.parts.kms;
      const kms: Kms = {
        provider: inner.provider,
        generateDataKey: (context, keyId) => inner.generateDataKey(context, keyId),
        decryptDataKey: (wrapped, context) => inner.decryptDataKey(wrapped, context),
        resolveKeyId: (keyId) => inner.resolveKeyId(keyId),
        async reEncrypt(wrapped, context, destination) {
          if (lateWrites > 0) {
            lateWrites -= 1;
            if (context.purpose === 'card-data') await lagging.tenant([]);
            else {
              const { wrapped: late } = await lagging.parts.kms.generateDataKey({ tenantId: tenant.id, purpose: 'card-data' });
              await lagging.parts.tenants.insertDataKey({ tenantId: tenant.id, purpose: 'card-data', wrapped: late });
            }
          }
          return inner.reEncrypt(wrapped, context, destination);
        },
      };
      const settles: number[] = [];
      const rotator = (settleMs = 0) =>
        new KeyRotator({
          kms, store: rotating.parts.keyRotation.store, crypto: createCardCrypto(rotating.parts.keyring), audit: rotating.parts.audit,
          batchSize: 5, settleMs, onSettle: (waitMs) => settles.push(waitMs),
        });
      const activate = () => rotating.parts.keyRotation.sync();

      // Two late writes: the second is a data key after data_keys was done, so a second pass re-wraps it.
      lateWrites = 2;
      const firstKey = await addLocalKmsKey(keyFile);
      const first = await rotator().rotate(firstKey, { reencryptCards: false }, activate);
      expect(lateWrites).toBe(0);
      expect(first).toMatchObject({ kmsKeyId: firstKey, state: 'completed' });
      expect(await notUnder(own.db, firstKey)).toBe(0);

      // A lagging instance that never stops: the rotation stays open and says to run it again.
      await lagging.parts.keyRotation.sync();
      lateWrites = Number.POSITIVE_INFINITY;
      const secondKey = await addLocalKmsKey(keyFile);
      // A typed error, which the CLI turns into exit 75 (run again later).
      const stopped = await rotator().rotate(secondKey, { reencryptCards: false }, activate).then(() => undefined, (err: unknown) => err);
      expect(stopped).toBeInstanceOf(RewrapIncompleteError);
      expect((stopped as RewrapIncompleteError).message).toMatch(/after 3 re-wrap passes.*run keys rotate again/);
      expect((stopped as RewrapIncompleteError).left).toBeGreaterThan(0);
      expect(await rotating.parts.keyRotation.store.latest()).toMatchObject({ kmsKeyId: secondKey, state: 'rewrapping' });
      // Resumed once its start is longer ago than the wait (by the database's clock): it does not wait again.
      lateWrites = 0;
      await own.db.query("UPDATE key_rotations SET started_at = now() - interval '1 minute' WHERE state = 'rewrapping'");
      const second = await rotator(30_000).rotate(secondKey, { reencryptCards: false }, activate);
      expect(settles).toEqual([]);
      expect(second).toMatchObject({ generation: first.generation + 1, kmsKeyId: secondKey, state: 'completed' });
      expect(await notUnder(own.db, secondKey)).toBe(0);
      expect(await rotationActions(own.db, second.generation)).toEqual(['key.rotation.start', 'key.rotation.rewrap', 'key.rotation.complete']);
    } finally {
      await lagging.close();
      await rotating.close();
      await own.drop();
    }
  });

  it('commits each state change of a rotation with its audit event: stopped at any audit write, no step is left unrecorded or recorded twice', async () => {
    const own = await freshDatabase('cardvault_rotation_audited');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      const { keys } = await rotating.tenant(['merchant', 'payments']);
      const cards = await vaultCards(rotating, keys.merchant!, 3);
      const audit = rotating.parts.audit;
      // The process stops at each write of rotation events once, the first time that write comes: a queued write
      // before it reaches the log, a write in a transaction after its append and before the commit.
      const stoppedAt = new Set<string>();
      const stops = (events: readonly AuditInput[]) => {
        const write = events.map((e) => e.action).join();
        if (!write.startsWith('key.rotation.') || stoppedAt.has(write)) return false;
        stoppedAt.add(write);
        return true;
      };
      const stopping: TransactionalAuditTrail<Queryable> = {
        record: (event) => (stops([event]) ? Promise.reject(new Error('stopped')) : audit.record(event)),
        async recordWithin(tx, events) {
          await audit.recordWithin(tx, events);
          if (stops(events)) throw new Error('stopped');
        },
      };
      const rotator = new KeyRotator({
        kms: rotating.parts.kms, store: rotating.parts.keyRotation.store, crypto: createCardCrypto(rotating.parts.keyring),
        audit: stopping, batchSize: 2, settleMs: 0,
      });
      const newKey = await addLocalKmsKey(keyFile);
      let runs = 0;
      for (;;) {
        runs += 1;
        const outcome = await rotator.rotate(newKey, { reencryptCards: true }, () => rotating.parts.keyRotation.sync()).catch((err: unknown) => err);
        const { recorded, taken } = await recordedAndTaken(own.db);
        expect(recorded).toEqual(taken);
        if (!(outcome instanceof Error)) break;
        expect(outcome.message).toBe('stopped');
        if (runs === 1) expect(await rotating.parts.keyRotation.store.latest()).toBeUndefined();
      }
      // Three writes (start; re-wrapped, with the step to re-sealing; re-sealed and complete, with the end), each stopped once.
      expect(runs).toBe(4);
      const done = (await rotating.parts.keyRotation.store.latest())!;
      expect(done).toMatchObject({ kmsKeyId: newKey, state: 'completed', reencrypted: 3 });
      expect(await rotationActions(own.db, done.generation)).toEqual(ROTATION_STEPS);
      await expectAllDetokenize(rotating, keys.payments!, cards);
    } finally {
      await rotating.close();
      await own.drop();
    }
  });

  it('keeps webhook signing secrets opening with only the new KMS key, and with --reencrypt-cards re-seals them under new data keys', async () => {
    const own = await freshDatabase('cardvault_rotation_webhooks');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    const retired: Harness[] = [];
    try {
      await rotating.parts.keyRotation.sync();
      const { tenant, keys } = await rotating.tenant(['merchant']);
      await vaultCards(rotating, keys.merchant!, 2);
      const created = await request(rotating.app).post('/v1/webhook-endpoints').set(bearer(keys.merchant!)).send({ url: 'https://hooks.shop.example/cardvault' });
      expect(created.status).toBe(201);
      const endpoint = created.body as { id: string; secret: string };
      const sealedSecret = async () => {
        const [row] = await own.db.query<{ data_key_id: string; iv: Buffer; tag: Buffer; secret_ciphertext: Buffer }>(
          'SELECT data_key_id, iv, tag, secret_ciphertext FROM webhook_endpoints WHERE id = $1',
          [endpoint.id],
        );
        return { dataKeyId: row!.data_key_id, iv: row!.iv, tag: row!.tag, ciphertext: row!.secret_ciphertext };
      };
      /** The secret as a vault whose KMS holds only the newest key opens it: the older KMS keys retired. */
      const openedWithNewestKeyOnly = async () => {
        const only = await newestKeyOnly(own.db, dir, keyFile);
        retired.push(only);
        return (await createCardCrypto(only.parts.keyring).openWebhookSecret(tenant.id, endpoint.id, await sealedSecret())).reveal();
      };
      const original = await sealedSecret();

      // Without re-sealing: the secret stays under its data key, which is re-wrapped under the new KMS key.
      await rotating.parts.keyRotation.rotator(20, undefined, 0).rotate(await addLocalKmsKey(keyFile), { reencryptCards: false }, () => rotating.parts.keyRotation.sync());
      expect((await sealedSecret()).dataKeyId).toBe(original.dataKeyId);
      expect(await openedWithNewestKeyOnly()).toBe(endpoint.secret);

      // With --reencrypt-cards: re-sealed under a data key the new KMS key generated, like the cards.
      const done = await rotating.parts.keyRotation.rotator(20, undefined, 0).rotate(await addLocalKmsKey(keyFile), { reencryptCards: true }, () => rotating.parts.keyRotation.sync());
      const resealed = await sealedSecret();
      expect(resealed.dataKeyId).not.toBe(original.dataKeyId);
      expect(await rotating.parts.keyRotation.store.countSecretsSealedBefore(done)).toBe(0);
      const [generatedUnder] = await own.db.query<{ generated_under: string }>('SELECT generated_under FROM data_keys WHERE id = $1', [resealed.dataKeyId]);
      expect(generatedUnder!.generated_under).toBe(done.kmsKeyId);
      expect(await openedWithNewestKeyOnly()).toBe(endpoint.secret);
      const [reencrypt] = await own.db.query<{ details: Record<string, unknown> }>(
        `SELECT event::jsonb -> 'details' AS details FROM audit_events WHERE event::jsonb ->> 'action' = 'key.rotation.reencrypt'
         AND (event::jsonb -> 'details' ->> 'generation')::int = $1`,
        [done.generation],
      );
      expect(reencrypt!.details).toMatchObject({ reencrypted: 2, webhook_secrets: 1 });
    } finally {
      for (const only of retired) await only.close();
      await rotating.close();
      await own.drop();
    }
  });

  it('re-seals the cards when an interrupted rotation begun without --reencrypt-cards is resumed with it', async () => {
    const own = await freshDatabase('cardvault_rotation_resume_reseal');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      const { keys } = await rotating.tenant(['merchant', 'payments']);
      const cards = await vaultCards(rotating, keys.merchant!, 3);
      const newKey = await addLocalKmsKey(keyFile);
      // A run without --reencrypt-cards that stopped (a crash, exit 75) once its rotation row was written.
      const store = rotating.parts.keyRotation.store;
      const crashed = await rotating.parts.keyRotation
        .rotator(20, undefined, 0)
        .rotate(newKey, { reencryptCards: false }, () => Promise.reject(new Error('stopped')))
        .then(() => undefined, (err: unknown) => err);
      expect(crashed).toEqual(new Error('stopped'));
      const begun = (await store.latest())!;
      expect(begun).toMatchObject({ kmsKeyId: newKey, state: 'rewrapping', reencryptCards: false });

      const done = await rotating.parts.keyRotation.rotator(20, undefined, 0).rotate(newKey, { reencryptCards: true }, () => rotating.parts.keyRotation.sync());
      expect(done).toMatchObject({ generation: begun.generation, kmsKeyId: newKey, state: 'completed', reencrypted: 3 });
      expect(await store.countSealedBefore(begun)).toBe(0);
      // The operator's change to the open rotation is recorded too, before the steps it made the rotation take.
      expect(await rotationActions(own.db, begun.generation)).toEqual([
        'key.rotation.start',
        'key.rotation.reencrypt_requested',
        'key.rotation.rewrap',
        'key.rotation.reencrypt',
        'key.rotation.complete',
      ]);
      await expectAllDetokenize(rotating, keys.payments!, cards);
    } finally {
      await rotating.close();
      await own.drop();
    }
  });

  it('aborts a rotation that has re-wrapped nothing: audited with the change, new keys back under the old KMS key, keys written meanwhile counted and still opening', async () => {
    const own = await freshDatabase('cardvault_rotation_abort');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    const other = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      const oldKey = (await rotating.parts.keyRotation.store.latest())?.kmsKeyId;
      const { keys } = await rotating.tenant(['merchant', 'payments']);
      const cards = await vaultCards(rotating, keys.merchant!, 2);
      const oldKeyOf = async () => (await own.db.query<{ k: string }>('SELECT kms_key_id AS k FROM data_keys ORDER BY created_at LIMIT 1'))[0]!.k;
      const before = oldKey ?? (await oldKeyOf());
      // A rotation begun (its run stopped before re-wrapping); the other instance takes it up and writes keys under it.
      const newKey = await addLocalKmsKey(keyFile);
      const stopped = await rotating.parts.keyRotation.rotator(20, undefined, 0).rotate(newKey, { reencryptCards: false }, () => Promise.reject(new Error('stopped'))).catch((err: unknown) => err);
      expect(stopped).toEqual(new Error('stopped'));
      await other.parts.keyRotation.sync();
      const meanwhile = await other.tenant(['merchant', 'payments']);
      const lateCards = await vaultCards(other, meanwhile.keys.merchant!, 1);
      const written = await own.db.query<{ n: number }>('SELECT count(*)::int AS n FROM data_keys WHERE kms_key_id = $1', [newKey]);
      expect(written[0]!.n).toBe(1);

      const settles: number[] = [];
      const aborting = rotating.parts.keyRotation.rotator(20, undefined, 300, (waitMs) => settles.push(waitMs));
      const { rotation, writtenUnderAborted } = await aborting.abort(() => rotating.parts.keyRotation.sync());
      expect(rotation).toMatchObject({ kmsKeyId: newKey, state: 'aborted', rewrapped: 0 });
      expect(settles).toHaveLength(1);
      // The late tenant's fingerprint key and its card's data key.
      expect(writtenUnderAborted).toBe(2);
      expect(await rotationActions(own.db, rotation.generation)).toEqual(['key.rotation.start', 'key.rotation.abort']);
      expect((await rotating.parts.keyRotation.store.latest())?.generation).not.toBe(rotation.generation);

      // Polled again, the other instance writes new keys under the old KMS key; what it wrote meanwhile still opens.
      await other.parts.keyRotation.sync();
      const after = await other.tenant(['merchant']);
      await vaultCards(other, after.keys.merchant!, 1);
      const [tenantKey] = await own.db.query<{ k: string }>('SELECT d.kms_key_id AS k FROM data_keys d WHERE d.tenant_id = $1', [after.tenant.id]);
      expect(tenantKey!.k).toBe(before);
      await expectAllDetokenize(other, meanwhile.keys.payments!, lateCards);
      await expectAllDetokenize(rotating, keys.payments!, cards);

      // Nothing left to abort; the next rotation re-wraps what the aborted key wraps.
      await expect(aborting.abort(() => rotating.parts.keyRotation.sync())).rejects.toThrow('no key rotation is in progress');
      const next = await rotating.parts.keyRotation.rotator(20, undefined, 0).rotate(await addLocalKmsKey(keyFile), { reencryptCards: false }, () => rotating.parts.keyRotation.sync());
      expect(next.generation).toBe(rotation.generation + 1);
      expect(await notUnder(own.db, next.kmsKeyId)).toBe(0);
    } finally {
      await other.close();
      await rotating.close();
      await own.drop();
    }
  });

  it('refuses to abort a rotation once it has re-wrapped keys, and a re-wrap batch after an abort replaces nothing', async () => {
    const own = await freshDatabase('cardvault_rotation_abort_race');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      const { keys } = await rotating.tenant(['merchant']);
      await vaultCards(rotating, keys.merchant!, 2);
      const store = rotating.parts.keyRotation.store;
      const aborter = rotating.parts.keyRotation.rotator(20, undefined, 0);
      // The operator aborts while a running keys rotate has its first batch back from the KMS.
      let abortedMidBatch = false;
      const inner = rotating.parts.kms;
      const kms: Kms = {
        provider: inner.provider,
        generateDataKey: (context, keyId) => inner.generateDataKey(context, keyId),
        decryptDataKey: (wrapped, context) => inner.decryptDataKey(wrapped, context),
        resolveKeyId: (keyId) => inner.resolveKeyId(keyId),
        async reEncrypt(wrapped, context, destination) {
          const rewrapped = await inner.reEncrypt(wrapped, context, destination);
          if (!abortedMidBatch) {
            abortedMidBatch = true;
            await aborter.abort(async () => undefined);
          }
          return rewrapped;
        },
      };
      const racing = new KeyRotator({ kms, store, crypto: createCardCrypto(rotating.parts.keyring), audit: rotating.parts.audit, batchSize: 5, settleMs: 0 });
      const newKey = await addLocalKmsKey(keyFile);
      const raced = await racing.rotate(newKey, { reencryptCards: false }, async () => undefined).catch((err: unknown) => err);
      expect(abortedMidBatch).toBe(true);
      expect((raced as Error).message).toMatch(/no longer re-wrapping/);
      expect(await store.countWrappedUnder(newKey)).toBe(0);

      // Once a batch is in, the rotation is past aborting: finished by keys rotate.
      const second = await addLocalKmsKey(keyFile);
      await own.db.transaction(async (tx) => {
        await tx.query("INSERT INTO key_rotations (generation, kms_key_id, state, reencrypt_cards, rewrapped) SELECT max(generation) + 1, $1, 'rewrapping', false, 1 FROM key_rotations", [second]);
      });
      await expect(aborter.abort(async () => undefined)).rejects.toThrow(/has re-wrapped keys already and cannot be aborted/);
      expect((await store.open())?.state).toBe('rewrapping');
    } finally {
      await rotating.close();
      await own.drop();
    }
  });

  it('reads and replaces each wrapped key and re-sealed card through an index, never by a scan of its table per batch or per row (data_keys grows without end)', async () => {
    const own = await freshDatabase('cardvault_rotation_plans');
    const rotating = await buildHarness({ db: own.db, kms: await openLocalKms({ keyFile }) });
    try {
      await rotating.parts.keyRotation.sync();
      const { keys } = await rotating.tenant(['merchant']);
      await vaultCards(rotating, keys.merchant!, 2);
      // The statements of each batch that read or replace wrapped keys, with their parameters, as the rotation sends
      // them (the count it takes once per pass is not one).
      const statements: Array<{ table: string; sql: string; params: readonly unknown[] }> = [];
      const keyTable = /^\s*(?:UPDATE|SELECT (?!count)[^;]*? FROM) (data_keys|fingerprint_keys|tenants|signing_keys|encryption_keys|cards) /;
      const watch = (on: Queryable): Queryable => ({
        ...on,
        query: (sql, params) => {
          const table = keyTable.exec(sql)?.[1];
          if (table) statements.push({ table, sql, params: params ?? [] });
          return on.query(sql, params);
        },
      });
      const watched = {
        ...watch(own.db),
        transaction: (fn: Parameters<Db['transaction']>[0]) => own.db.transaction((tx, opened) => fn(watch(tx), opened)),
      } as unknown as Db;
      const rotator = new KeyRotator({
        kms: rotating.parts.kms, store: new PgKeyRotationStore(watched), crypto: createCardCrypto(rotating.parts.keyring),
        audit: rotating.parts.audit, batchSize: 5, settleMs: 0,
      });
      const newKey = await addLocalKmsKey(keyFile);
      await rotator.rotate(newKey, { reencryptCards: true }, () => rotating.parts.keyRotation.sync());

      const kinds = new Set(statements.map((s) => `${s.sql.trim().split(' ')[0]} ${s.table}`));
      for (const table of ['cards', 'data_keys', 'encryption_keys', 'fingerprint_keys', 'signing_keys']) {
        expect(kinds).toContain(`SELECT ${table}`);
        expect(kinds).toContain(`UPDATE ${table}`);
      }
      // With sequential scans priced out, a plan that still has one found no index to use: a scan per batch or key.
      const scanned: string[] = [];
      for (const { table, sql, params } of statements) {
        const plan = await own.db.transaction(async (tx) => {
          await tx.query('SET LOCAL enable_seqscan = off');
          return tx.query(`EXPLAIN ${sql}`, params);
        });
        if (/Seq Scan/.test(JSON.stringify(plan))) scanned.push(`${sql.trim().split(' ')[0]} ${table}`);
      }
      expect([...new Set(scanned)]).toEqual([]);
    } finally {
      await rotating.close();
      await own.drop();
    }
  });
});

describe('with AWS KMS (moto, the real SDK)', () => {
  let moto: MotoServer;
  let fresh: FreshDatabase;

  beforeAll(async () => {
    moto = await startMoto();
    fresh = await freshDatabase('cardvault_rotation_aws');
  });
  afterAll(async () => {
    await fresh?.drop();
    await moto?.stop();
  });

  it('re-wraps every data key with ReEncrypt under the new key, and works with the old key disabled', async () => {
    const keyA = await createSymmetricKey(moto.endpoint);
    const keyB = await createSymmetricKey(moto.endpoint);
    const awsKms = (keyId: string) => createAwsKms({ keyId, endpoint: moto.endpoint, region: TEST_REGION, credentials: TEST_CREDENTIALS });
    const h = await buildHarness({ db: fresh.db, kms: awsKms(keyA.keyId) });
    try {
      const { keys } = await h.tenant(['merchant', 'payments']);
      const cards = await vaultCards(h, keys.merchant!, 20);
      // Named by key id; recorded by ARN, as KMS names it.
      // One instance: nothing to wait for.
      const rotation = await h.parts.keyRotation.rotator(5, undefined, 0).rotate(keyB.keyId, { reencryptCards: false }, () => h.parts.keyRotation.sync());
      expect(rotation.kmsKeyId).toBe(keyB.arn);
      const wrapped = await wrappingKeys(fresh.db);
      for (const [table] of WRAPPED) expect(wrapped[table]).toEqual([keyB.arn]);

      const client = new KMSClient({ endpoint: moto.endpoint, region: TEST_REGION, credentials: TEST_CREDENTIALS });
      await client.send(new DisableKeyCommand({ KeyId: keyA.keyId }));
      const cold = await buildHarness({ db: fresh.db, kms: awsKms(keyB.keyId) });
      try {
        await expectAllDetokenize(cold, keys.payments!, cards);
        const more = await vaultCards(cold, keys.merchant!, 3);
        await expectAllDetokenize(cold, keys.payments!, more);
      } finally {
        await cold.close();
      }
    } finally {
      await h.close();
    }
  });
});
