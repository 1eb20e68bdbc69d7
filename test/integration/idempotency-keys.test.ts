// Idempotency-Key storage: only keyed digests reach PostgreSQL, records from before migration 0013 are re-keyed,
// and the previous release's statements still work on the new schema during a rolling deploy.
import request from 'supertest';
import { purgeExpiredIdempotencyKeys } from '../../src/store/card-store';
import { migrateDown, migrateUp } from '../../src/store/migrate';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

jest.setTimeout(60_000);

const tokenize = (h: Harness, apiKey: string, key: string, body: object) =>
  request(h.app).post('/v1/tokens').set(bearer(apiKey)).set('Idempotency-Key', key).send(body);

describe('on the shared test database (searched by the canary)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness();
  });
  afterAll(() => h.close());

  it('stores an Idempotency-Key only as its digest, a card number sent as one included, and still replays by it', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const keyPan = newPan();
    for (const key of [keyPan, keyPan.match(/.{1,4}/g)!.join('-')]) {
      const body = cardBody(newPan());
      const first = await tokenize(h, keys.merchant!, key, body);
      expect(first.status).toBe(201);
      expect(first.headers['idempotency-key']).toBeUndefined();
      expect(JSON.stringify(first.body)).not.toContain(keyPan.slice(0, 12));
      const replay = await tokenize(h, keys.merchant!, key, body);
      expect(replay.status).toBe(201);
      expect(replay.body.token).toBe(first.body.token);
      const reused = await tokenize(h, keys.merchant!, key, cardBody(newPan()));
      expect(reused.body.code).toBe('idempotency_key_reused');
    }

    const rows = await h.db.query<{ row: string }>('SELECT row_to_json(i)::text AS row FROM idempotency_keys i WHERE tenant_id = $1', [tenant.id]);
    expect(rows).toHaveLength(2);
    for (const { row } of rows) {
      expect(JSON.parse(row)).toMatchObject({ key: null });
      expect(row.replace(/[^0-9]/g, '')).not.toContain(keyPan.slice(0, 12));
    }
    expect(await h.idempotencyRecords(tenant.id, keyPan)).toHaveLength(1);
  });

  it('purges expired records a batch at a time until none is left, keeping the live ones', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    for (const key of ['p-1', 'p-2', 'p-3', 'p-4', 'p-5', 'live']) expect((await tokenize(h, keys.merchant!, key, cardBody(newPan()))).status).toBe(201);
    await h.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", [tenant.id]);
    await h.db.query("UPDATE idempotency_keys SET expires_at = now() + interval '1 day' WHERE tenant_id = $1 AND id = (SELECT max(id) FROM idempotency_keys WHERE tenant_id = $1)", [tenant.id]);
    const statements = jest.spyOn(h.db, 'query');
    try {
      expect(await purgeExpiredIdempotencyKeys(h.db, 2)).toBeGreaterThanOrEqual(5);
      // Batches of 2: at least three statements for five records, each bounded however long the backlog.
      expect(statements.mock.calls.length).toBeGreaterThanOrEqual(3);
    } finally {
      statements.mockRestore();
    }
    expect(await h.idempotencyRecords(tenant.id, 'live')).toHaveLength(1);
    expect((await h.db.query('SELECT 1 FROM idempotency_keys WHERE tenant_id = $1', [tenant.id])).length).toBe(1);
  });

  it('lets a key be used again once its record has expired, by exactly one of many concurrent requests', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const expire = async () => {
      const [record] = await h.idempotencyRecords(tenant.id, 'order-9');
      await h.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key_digest_odd = $2", [
        tenant.id, record!.key_digest_odd,
      ]);
    };
    const first = await tokenize(h, keys.merchant!, 'order-9', cardBody(newPan()));
    expect(first.status).toBe(201);
    await expire();
    const body = cardBody(newPan());
    const answers = await Promise.all(Array.from({ length: 8 }, () => tokenize(h, keys.merchant!, 'order-9', body)));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(new Set(answers.map((a) => a.body.token)).size).toBe(1);
    expect(answers[0]!.body.token).not.toBe(first.body.token);
    const records = await h.idempotencyRecords(tenant.id, 'order-9');
    expect(records).toHaveLength(1);
    expect(Number(records[0]!.hours)).toBeGreaterThanOrEqual(24);
    expect((await h.db.query('SELECT 1 FROM cards WHERE tenant_id = $1', [tenant.id])).length).toBe(2);
  });

  it("drops a deleted card's metadata from the responses stored for it: a retry answers 409 card_deleted and vaults nothing", async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const body = cardBody(newPan());
    const first = await tokenize(h, keys.merchant!, 'order-d1', body);
    expect(first.status).toBe(201);
    // The same card again under another key: a 200 whose stored response names the same token.
    expect((await tokenize(h, keys.merchant!, 'order-d2', body)).status).toBe(200);
    const keptBody = cardBody(newPan());
    const kept = await tokenize(h, keys.merchant!, 'order-d3', keptBody);
    const stored = () => h.db.query<{ response: string }>('SELECT response::text FROM idempotency_keys WHERE tenant_id = $1 ORDER BY id', [tenant.id]);
    expect((await stored()).filter((r) => r.response.includes(first.body.fingerprint))).toHaveLength(2);

    expect((await request(h.app).delete(`/v1/tokens/${first.body.token}`).set(bearer(keys.merchant!))).status).toBe(204);
    const after = (await stored()).map((r) => r.response);
    expect(after.filter((r) => r.includes(first.body.fingerprint) || r.includes(first.body.token))).toEqual([]);
    expect(after.filter((r) => r.includes(kept.body.fingerprint))).toHaveLength(1);

    for (const key of ['order-d1', 'order-d2']) {
      const retry = await tokenize(h, keys.merchant!, key, body);
      expect(retry.status).toBe(409);
      expect(retry.body).toMatchObject({ code: 'card_deleted' });
      expect(retry.text).not.toContain(first.body.fingerprint);
      // Another request under the key is still told the key was used for something else.
      expect((await tokenize(h, keys.merchant!, key, cardBody(newPan()))).body.code).toBe('idempotency_key_reused');
    }
    // Another card's records are left alone.
    expect((await tokenize(h, keys.merchant!, 'order-d3', keptBody)).body).toEqual(kept.body);
    expect((await h.db.query("SELECT 1 FROM cards WHERE tenant_id = $1 AND status <> 'deleted'", [tenant.id])).length).toBe(1);
  });

  it('answers card_deleted to a retry whose stored response still names a deleted card (written as the delete ran)', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const body = cardBody(newPan());
    const first = await tokenize(h, keys.merchant!, 'order-r1', body);
    const [record] = await h.db.query<{ id: string; response: unknown }>('SELECT id, response FROM idempotency_keys WHERE tenant_id = $1', [tenant.id]);
    expect((await request(h.app).delete(`/v1/tokens/${first.body.token}`).set(bearer(keys.merchant!))).status).toBe(204);
    // A keyed tokenize of the same card that read it before the delete committed, and recorded after.
    await h.db.query('UPDATE idempotency_keys SET response = $2 WHERE id = $1', [record!.id, JSON.stringify(record!.response)]);
    const retry = await tokenize(h, keys.merchant!, 'order-r1', body);
    expect(retry.status).toBe(409);
    expect(retry.body).toMatchObject({ code: 'card_deleted' });
    expect(retry.text).not.toContain(first.body.fingerprint);
  });

  it('echoes an ordinary key', async () => {
    const { keys } = await h.tenant(['merchant']);
    const key = '3f1b8c52-9d0e-4b7a-8e61-2c5d9f4a7b10';
    const res = await tokenize(h, keys.merchant!, key, cardBody(newPan()));
    expect(res.status).toBe(201);
    expect(res.headers['idempotency-key']).toBe(key);
  });
});

describe('records from before migration 0013', () => {
  let fresh: FreshDatabase;
  let h: Harness;
  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_idem');
    h = await buildHarness({ db: fresh.db });
  });
  afterAll(async () => {
    await h.close();
    await fresh.drop();
  });

  /** Turns a record made by this release into the one the previous release made for the same request. */
  async function asPreviousRelease(tenantId: string, key: string): Promise<void> {
    const [record] = await h.idempotencyRecords(tenantId, key);
    await fresh.db.query(
      'UPDATE idempotency_keys SET key = $3, key_digest_odd = NULL, key_digest_even = NULL WHERE tenant_id = $1 AND key_digest_odd = $2',
      [tenantId, record!.key_digest_odd, key],
    );
  }

  const plaintextKeys = async (tenantId: string) =>
    (await fresh.db.query<{ key: string }>('SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND key IS NOT NULL ORDER BY key', [tenantId])).map((r) => r.key);

  it('survive the migration, are re-keyed as digests, and their retries replay', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const body = cardBody(newPan());
    const first = await tokenize(h, keys.merchant!, 'order-legacy', body);
    expect(first.status).toBe(201);
    await tokenize(h, keys.merchant!, 'order-new', cardBody(newPan()));
    await asPreviousRelease(tenant.id, 'order-legacy');

    // Down: records kept only as digests cannot become keys again, and go; the previous release's stay.
    await migrateDown(fresh.db, { to: '0012_fingerprint_keys' });
    expect(await plaintextKeys(tenant.id)).toEqual(['order-legacy']);
    expect((await fresh.db.query('SELECT 1 FROM idempotency_keys WHERE tenant_id = $1', [tenant.id])).length).toBe(1);
    // Up again: 0013 first, then whatever later migrations the way down reverted with it.
    expect((await migrateUp(fresh.db))[0]).toBe('0013_idempotency_key_digests');
    expect(await plaintextKeys(tenant.id)).toEqual(['order-legacy']);

    const pass = await h.parts.idempotency.digestLegacyKeys();
    expect(pass).toEqual({ digested: 1, failed: 0 });
    expect(await plaintextKeys(tenant.id)).toEqual([]);
    const [record] = await h.idempotencyRecords(tenant.id, 'order-legacy');
    expect(record).toMatchObject({ key: null, digest_generation: 1 });

    const replay = await tokenize(h, keys.merchant!, 'order-legacy', body);
    expect(replay.status).toBe(201);
    expect(replay.body).toEqual(first.body);
    expect((await tokenize(h, keys.merchant!, 'order-legacy', cardBody(newPan()))).body.code).toBe('idempotency_key_reused');
    expect(await h.parts.idempotency.digestLegacyKeys()).toEqual({ digested: 0, failed: 0 });
  });

  it("takes the previous release's claims during a rolling deploy, and drops a plaintext copy of a key already held as a digest", async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    // The previous release's claim, statement for statement: its ON CONFLICT (tenant_id, key) still has its constraint.
    const previousClaim = () =>
      fresh.db.query(
        `INSERT INTO idempotency_keys (tenant_id, key, request_digest, digest_generation, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
         ON CONFLICT (tenant_id, key) DO UPDATE
           SET request_digest = EXCLUDED.request_digest, digest_generation = EXCLUDED.digest_generation, response = NULL,
               created_at = now(), expires_at = EXCLUDED.expires_at
           WHERE idempotency_keys.expires_at < now()
         RETURNING key`,
        [tenant.id, 'order-both', 'digest-of-the-request', 1, 86_400],
      );
    expect(await previousClaim()).toHaveLength(1);
    expect(await previousClaim()).toHaveLength(0);
    // The same key, claimed meanwhile by this release (it cannot see a plaintext key), and one expired record.
    await tokenize(h, keys.merchant!, 'order-both', cardBody(newPan()));
    await tokenize(h, keys.merchant!, 'order-old', cardBody(newPan()));
    await asPreviousRelease(tenant.id, 'order-old');
    await fresh.db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = 'order-old'", [tenant.id]);

    // As main.ts runs them: the purge, then the re-keying.
    await h.parts.idempotency.purgeExpired();
    expect(await h.parts.idempotency.digestLegacyKeys()).toEqual({ digested: 1, failed: 0 });
    expect(await plaintextKeys(tenant.id)).toEqual([]);
    const kept = await h.idempotencyRecords(tenant.id, 'order-both');
    expect(kept).toHaveLength(1);
    expect(kept[0]!.key_digest_odd).not.toBeNull();
    expect((await fresh.db.query('SELECT 1 FROM idempotency_keys WHERE tenant_id = $1', [tenant.id])).length).toBe(1);
  });
});
