import request from 'supertest';
import { createAwsKms } from '../../src/crypto/aws-kms';
import { openPostgres } from '../../src/store/db';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { startKmsProxy, type KmsProxy } from '../support/kms-proxy';
import { createSymmetricKey, startMoto, TEST_CREDENTIALS, TEST_REGION, type MotoServer } from '../support/moto';
import { newPan } from '../support/pans';
import { TEST_DATABASE_URL } from '../support/env';

jest.setTimeout(60_000);

describe('PostgreSQL unreachable', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness({ db: openPostgres({ url: 'postgres://postgres@127.0.0.1:1/none', poolSize: 1 }), ensureSigningKey: false });
  });
  afterAll(() => h.db.close());

  it('reports not ready and answers requests with 503 database_unavailable and Retry-After', async () => {
    const ready = await request(h.app).get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.database).toBe('down');
    expect((await request(h.app).get('/healthz')).status).toBe(200);
    const res = await request(h.app).post('/v1/tokens').set(bearer(`cvk_${'B'.repeat(43)}`)).send(cardBody(newPan()));
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('database_unavailable');
    expect(res.headers['retry-after']).toBeDefined();
  });
});

describe('a statement cancelled by statement_timeout', () => {
  it('is database_unavailable (503, retry later), not an internal error', async () => {
    const db = openPostgres({ url: TEST_DATABASE_URL, poolSize: 1 });
    try {
      const err = await db.transaction((tx) => tx.query('SELECT pg_sleep(1)'), { statementTimeoutMs: 50 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'database_unavailable' });
      expect((err as { cause?: { code?: string } }).cause?.code).toBe('57014');
    } finally {
      await db.close();
    }
  });
});

describe('AWS KMS outage, through the HTTP API', () => {
  let moto: MotoServer;
  let proxy: KmsProxy;
  let h: Harness;

  beforeAll(async () => {
    moto = await startMoto();
    proxy = await startKmsProxy(moto.endpoint);
    const key = await createSymmetricKey(moto.endpoint);
    const kms = createAwsKms({ keyId: key.arn, region: TEST_REGION, endpoint: proxy.endpoint, credentials: TEST_CREDENTIALS, maxAttempts: 2 });
    h = await buildHarness({ kms });
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.stop();
    await moto?.stop();
  });

  it('keeps serving from cached data keys, answers 503 kms_unavailable otherwise, and recovers', async () => {
    const warm = await h.tenant(['merchant', 'payments']);
    const cold = await h.tenant(['merchant']);
    const pan = newPan();
    const created = await request(h.app).post('/v1/tokens').set(bearer(warm.keys.merchant!)).send(cardBody(pan));
    expect(created.status).toBe(201);

    await proxy.down();
    const cached = await request(h.app).post(`/v1/tokens/${created.body.token}/detokenize`).set(bearer(warm.keys.payments!)).send({ purpose: 'authorization' });
    expect(cached.body.card.number).toBe(pan);
    expect((await request(h.app).post('/v1/tokens').set(bearer(warm.keys.merchant!)).send(cardBody(newPan()))).status).toBe(201);

    const refused = await request(h.app).post('/v1/tokens').set(bearer(cold.keys.merchant!)).send(cardBody(newPan()));
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe('kms_unavailable');
    expect(refused.headers['retry-after']).toBeDefined();

    await proxy.up();
    const recovered = await request(h.app).post('/v1/tokens').set(bearer(cold.keys.merchant!)).send(cardBody(newPan()));
    expect(recovered.status).toBe(201);
  });
});
