// KMS key rotation under load: re-wrapping every key, re-sealing every card, two instances, and the old key retired.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DisableKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import request from 'supertest';
import { createAwsKms } from '../../src/crypto/aws-kms';
import { addLocalKmsKey, openLocalKms } from '../../src/crypto/local-kms';
import type { RotationProgress } from '../../src/crypto/key-rotation';
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

  it('rotates under load: reads and writes never fail, every key and card moves to the new key, the old one is then unneeded', async () => {
    const { keys } = await h.tenant(['merchant', 'payments']);
    const cards = await vaultCards(h, keys.merchant!, 150);
    // A second instance over the same database that has not yet seen the rotation.
    const other = await buildHarness({ db: fresh.db, kms: await openLocalKms({ keyFile }) });
    const oldKey = (await wrappingKeys(fresh.db)).data_keys[0]!;

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

    const newKey = await addLocalKmsKey(keyFile);
    const progress: RotationProgress[] = [];
    const rotation = await h.parts.keyRotation.rotator(20, (p) => progress.push(p)).rotate(newKey, { reencryptCards: true }, () => h.parts.keyRotation.sync());
    // The other instance picks the rotation up on its next poll; then its new data keys are under the new key too.
    await other.parts.keyRotation.sync();
    await new Promise((resolve) => setTimeout(resolve, 300));
    running = false;
    await Promise.all(load);

    expect(failures).toBe(0);
    expect(requests).toBeGreaterThan(50);
    expect(rotation).toMatchObject({ generation: 1, kmsKeyId: newKey, state: 'completed' });
    expect(rotation.rewrapped).toBeGreaterThan(0);
    expect(rotation.reencrypted).toBeGreaterThanOrEqual(150);
    expect(progress.some((p) => p.phase === 'rewrap')).toBe(true);
    const lastReseal = progress.filter((p) => p.phase === 'reencrypt').at(-1)!;
    expect(lastReseal.done).toBe(lastReseal.total);

    // Cards vaulted by the other instance before it saw the rotation sealed under an old data key: a second
    // pass (running the command again) re-seals them; nothing may be left under the old key after it.
    await h.parts.keyRotation.rotator(20).rotate(await addLocalKmsKey(keyFile), { reencryptCards: true }, () => h.parts.keyRotation.sync());
    const finalKey = (await h.parts.keyRotation.store.latest())!.kmsKeyId;
    const wrapped = await wrappingKeys(fresh.db);
    for (const [table] of WRAPPED) expect(wrapped[table]).toEqual([finalKey]);
    expect(finalKey).not.toBe(oldKey);
    const stale = await fresh.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cards c JOIN data_keys d ON d.id = c.data_key_id
       WHERE d.created_at < (SELECT started_at FROM key_rotations WHERE generation = 2)`,
    );
    expect(stale[0]!.n).toBe(0);

    // A KMS holding only the newest key opens everything: the older keys can be destroyed.
    const onlyNew = path.join(dir, 'only-new.key');
    const all = fs.readFileSync(keyFile);
    fs.writeFileSync(onlyNew, all.subarray(all.length - 32), { mode: 0o600 });
    const fresh2 = await buildHarness({ db: fresh.db, kms: await openLocalKms({ keyFile: onlyNew }) });
    try {
      await expectAllDetokenize(fresh2, keys.payments!, cards);
    } finally {
      await fresh2.close();
      await other.close();
    }

    const actions = await fresh.db.query<{ action: string }>(
      "SELECT event::jsonb ->> 'action' AS action FROM audit_events WHERE event::jsonb ->> 'action' LIKE 'key.rotation.%' ORDER BY seq",
    );
    expect(actions.map((a) => a.action)).toEqual([
      'key.rotation.start', 'key.rotation.rewrap', 'key.rotation.reencrypt', 'key.rotation.complete',
      'key.rotation.start', 'key.rotation.rewrap', 'key.rotation.reencrypt', 'key.rotation.complete',
    ]);
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
      const rotation = await h.parts.keyRotation.rotator(5).rotate(keyB.keyId, { reencryptCards: false }, () => h.parts.keyRotation.sync());
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
