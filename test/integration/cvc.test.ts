import type { TransactionOptions } from '../../src/store/db';
import request from 'supertest';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Keyring } from '../../src/crypto/keyring';
import { CvcHolder } from '../../src/domain/cvc';
import { systemClock, type Kms } from '../../src/domain/ports';
import { Vault } from '../../src/domain/vault';
import { cryptoTokenRandomness } from '../../src/crypto/random';
import { VaultError } from '../../src/errors';
import { PgCardStore } from '../../src/store/card-store';
import { MemoryCvcStore, RedisCvcStore } from '../../src/store/cvc-store';
import { TEST_REDIS_URL } from '../support/env';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan, recordPan } from '../support/pans';

describe('the CVC, held in Redis', () => {
  let h: Harness;
  let store: RedisCvcStore;
  let keys: Record<string, string>;
  beforeAll(async () => {
    store = new RedisCvcStore(TEST_REDIS_URL);
    h = await buildHarness({ cvc: { store, ttlSeconds: 600 } });
    keys = (await h.tenant(['merchant', 'payments'])).keys;
  });
  afterAll(async () => {
    await h.close();
    await store.close();
  });

  const tokenize = (pan: string, cvc?: string) =>
    request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan, cvc === undefined ? {} : { cvc }));
  const detokenize = (token: string, purpose = 'authorization') =>
    request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose });

  it('is revealed once, to an authorization, and then gone', async () => {
    const created = await tokenize(newPan(), '737');
    expect(created.status).toBe(201);
    expect(created.body.cvc_held).toBe(true);
    const token = created.body.token as string;
    expect((await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).body.cvc_held).toBe(true);

    const refund = await detokenize(token, 'refund');
    expect(refund.body.card.cvc).toBeUndefined();
    const first = await detokenize(token);
    expect(first.body.card.cvc).toBe('737');
    const second = await detokenize(token);
    expect(second.status).toBe(200);
    expect(second.body.card.cvc).toBeUndefined();
    expect((await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!))).body.cvc_held).toBe(false);
  });

  it('holds no CVC for a card the issuer closed, which detokenize never reveals', async () => {
    const pan = newPan();
    const token = (await tokenize(pan)).body.token as string;
    await h.db.query("UPDATE cards SET status = 'closed', closed_at = now() WHERE token = $1", [token]);
    const again = await tokenize(pan, '737');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ token, status: 'closed', cvc_held: false });
    const tenantId = (await h.db.query<{ tenant_id: string }>('SELECT tenant_id FROM cards WHERE token = $1', [token]))[0]!.tenant_id;
    expect(await store.take(tenantId, token)).toBeUndefined();
  });

  it('reports a CVC held from before when the same card comes back without one, and none for a new card', async () => {
    const pan = newPan();
    expect((await tokenize(pan, '246')).body.cvc_held).toBe(true);
    const again = await tokenize(pan);
    expect(again.status).toBe(200);
    expect(again.body.cvc_held).toBe(true);
    expect((await tokenize(newPan())).body.cvc_held).toBe(false);
  });

  it('is not held again by a retry with the same Idempotency-Key, whatever CVC the retry carries', async () => {
    const pan = newPan();
    const keyed = (cvc: string) =>
      request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', `order-${pan.slice(-6)}`).send(cardBody(pan, { cvc }));
    const first = await keyed('737');
    expect(first.status).toBe(201);
    expect(first.body.cvc_held).toBe(true);
    const token = first.body.token as string;
    expect((await detokenize(token)).body.card.cvc).toBe('737');

    // The client timed out and retries: the answer is a replay, and the CVC an authorization used stays used.
    for (const cvc of ['737', '999']) {
      const retry = await keyed(cvc);
      expect(retry.status).toBe(201);
      expect(retry.body.token).toBe(token);
      expect(retry.body.cvc_held).toBe(false);
      expect((await detokenize(token)).body.card.cvc).toBeUndefined();
    }
  });

  it('reports a replay as holding the CVC its first request left unused', async () => {
    const pan = newPan();
    const keyed = () => request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', `order-${pan.slice(-6)}`).send(cardBody(pan, { cvc: '321' }));
    expect((await keyed()).body.cvc_held).toBe(true);
    expect((await keyed()).body.cvc_held).toBe(true);
    expect((await detokenize((await keyed()).body.token as string)).body.card.cvc).toBe('321');
  });

  it('reveals it to exactly one of many concurrent authorizations', async () => {
    const token = (await tokenize(newPan(), '123')).body.token as string;
    const answers = await Promise.all(Array.from({ length: 10 }, () => detokenize(token)));
    expect(answers.filter((a) => a.body.card.cvc === '123')).toHaveLength(1);
  });

  it('is stored only sealed, bound to its card', async () => {
    const token = (await tokenize(newPan(), '482')).body.token as string;
    const tenantId = (await h.db.query<{ tenant_id: string }>('SELECT tenant_id FROM cards WHERE token = $1', [token]))[0]!.tenant_id;
    const sealed = await store.take(tenantId, token);
    expect(sealed!.ciphertext).toHaveLength(3);
    expect(sealed!.tag).toHaveLength(16);
    // Put back under another token: it must not open there.
    const other = (await tokenize(newPan())).body.token as string;
    await store.hold(tenantId, other, sealed!, 60);
    const res = await detokenize(other);
    expect(res.status).toBe(500);
  });

  it('expires after its TTL', async () => {
    const token = (await tokenize(newPan(), '555')).body.token as string;
    const tenantId = (await h.db.query<{ tenant_id: string }>('SELECT tenant_id FROM cards WHERE token = $1', [token]))[0]!.tenant_id;
    const sealed = await store.take(tenantId, token);
    await store.hold(tenantId, token, sealed!, 1);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect((await detokenize(token)).body.card.cvc).toBeUndefined();
  });

  it('refuses a CVC of the wrong length for the brand with invalid_cvc, writing nothing', async () => {
    // A tenant of its own: other suites share the database, and a BIN and last four can repeat across them.
    const own = await h.tenant(['merchant']);
    const send = (pan: string, cvc: string) =>
      request(h.app).post('/v1/tokens').set(bearer(own.keys.merchant!)).send(cardBody(pan, { cvc }));
    const res = await send(newPan(), '12');
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'invalid_cvc', pointer: '/card/cvc' });
    const amex = await send(newPan('378282', 15), '123');
    expect(amex.status).toBe(400);
    expect(amex.body.code).toBe('invalid_cvc');
    const rows = await h.db.query('SELECT 1 FROM cards WHERE tenant_id = $1', [own.tenant.id]);
    expect(rows).toHaveLength(0);
  });

  it('never reaches a log line', () => {
    expect(h.captured.lines.join('')).not.toMatch(/"cvc":"[0-9]{3,4}"/);
  });
});

describe('without Redis', () => {
  it('vaults the card all the same and says no CVC is held', async () => {
    const store = new RedisCvcStore('redis://127.0.0.1:1');
    const h = await buildHarness({ cvc: { store, ttlSeconds: 600 } });
    try {
      const { keys } = await h.tenant(['merchant']);
      const res = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan(), { cvc: '737' }));
      expect(res.status).toBe(201);
      expect(res.body.cvc_held).toBe(false);
    } finally {
      await h.close();
      await store.close();
    }
  });

  it('expires CVCs from process memory too', async () => {
    let now = 0;
    const memory = new MemoryCvcStore(() => now);
    const sealed = { dataKeyId: 'k', iv: Buffer.alloc(12), tag: Buffer.alloc(16), ciphertext: Buffer.from('abc') };
    await memory.hold('t', 'tok', sealed, 10);
    expect(await memory.held('t', 'tok')).toBe(true);
    now += 10_001;
    expect(await memory.held('t', 'tok')).toBe(false);
    expect(await memory.take('t', 'tok')).toBeUndefined();
  });
});

describe('with the KMS down once the card is vaulted', () => {
  it('vaults the card without its CVC, answers 201 with cvc_held false, and audits a successful tokenize', async () => {
    const h = await buildHarness();
    try {
      const { tenant, keys } = await h.tenant(['merchant', 'payments']);
      const cardVaulted = async () => (await h.db.query('SELECT 1 FROM cards WHERE tenant_id = $1', [tenant.id])).length > 0;
      // A new data key for this tenant is refused once its card is in the database: the CVC's seal, and only it.
      const kms: Kms = {
        ...h.kms,
        async generateDataKey(context, keyId) {
          if (context.tenantId === tenant.id && (await cardVaulted())) throw new VaultError('kms_unavailable');
          return h.kms.generateDataKey(context, keyId);
        },
      };
      // One use per data key: the card's seal takes the first, so the CVC's needs a new one.
      const crypto = createCardCrypto(new Keyring(kms, h.parts.tenants, { maxAgeMs: 60_000, maxUses: 1, maxEntries: 100 }));
      const vault = new Vault({
        cards: new PgCardStore(h.db, h.db),
        audit: h.parts.audit,
        cvc: new CvcHolder(new MemoryCvcStore(), crypto, 600),
        crypto,
        randomness: cryptoTokenRandomness,
        clock: systemClock,
        idempotencyTtlSeconds: 86_400,
      });
      const app = h.appWith({ vault });
      const pan = recordPan('4111111111111111');
      const send = () => request(app).post('/v1/tokens').set(bearer(keys.merchant!)).set('Idempotency-Key', 'order-kms-cvc').send(cardBody(pan, { cvc: '123' }));

      const created = await send();
      expect(created.status).toBe(201);
      expect(created.body.cvc_held).toBe(false);
      const token = created.body.token as string;
      const revealed = await request(app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
      expect(revealed.status).toBe(200);
      expect(revealed.body.card.number).toBe(pan);
      expect(revealed.body.card.cvc).toBeUndefined();
      const retry = await send();
      expect(retry.status).toBe(201);
      expect(retry.body).toMatchObject({ token, cvc_held: false });

      await h.parts.audit.flush();
      const rows = await h.db.query<{ event: string }>('SELECT event FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenant.id]);
      const tokenized = rows.map((r) => JSON.parse(r.event) as { action: string; outcome: string; details: Record<string, unknown> }).filter((e) => e.action === 'card.tokenize');
      expect(tokenized[0]).toMatchObject({ outcome: 'success', details: { created: true, cvc_held: false } });
      expect(tokenized.every((e) => e.outcome === 'success')).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe('never in PostgreSQL', () => {
  it('sends no parameter holding the CVC to the database while tokenizing with one', async () => {
    const { openPostgres } = await import('../../src/store/db');
    const { TEST_DATABASE_URL } = await import('../support/env');
    const real = openPostgres({ url: TEST_DATABASE_URL, poolSize: 4 });
    const sent: unknown[] = [];
    const record = (params?: readonly unknown[]) => sent.push(...(params ?? []));
    // Every statement on every path (pool and transactions) passes through here.
    const spy = {
      ...real,
      query: <R>(sql: string, params?: readonly unknown[]) => (record(params), real.query<R>(sql, params)),
      transaction: <T>(fn: Parameters<typeof real.transaction<T>>[0], options?: TransactionOptions) =>
        real.transaction(
          (tx, opened) => fn({ ...tx, query: <R>(sql: string, params?: readonly unknown[]) => (record(params), tx.query<R>(sql, params)) }, opened),
          options,
        ),
    };
    const h = await buildHarness({ db: spy, cvc: { store: new MemoryCvcStore(), ttlSeconds: 600 } });
    try {
      const { keys } = await h.tenant(['merchant', 'payments']);
      sent.length = 0;
      const cvc = '7391';
      const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan('378282', 15), { cvc }));
      expect(created.body.cvc_held).toBe(true);
      expect(sent.length).toBeGreaterThan(3);
      const leaked = sent.filter((p) => (typeof p === 'string' && p.includes(cvc)) || (Buffer.isBuffer(p) && p.includes(Buffer.from(cvc))));
      expect(leaked).toEqual([]);
    } finally {
      await h.close();
      await real.close();
    }
  });
});
