// Prometheus metrics on METRICS_PORT: the vault as main.ts starts it, driven over its API, then scraped.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { startVault, type RunningVault } from '../../src/main';
import { register } from 'prom-client';
import { createMetrics } from '../../src/metrics/metrics';
import { instrumentKms } from '../../src/metrics/instrumented-kms';
import { FAILED_AUTH_PER_MINUTE } from '../../src/http/rate-limit';
import { assembleUpdater } from '../../src/updater/dependencies';
import { Secret } from '../../src/domain/secret';
import type { ClaimedDelivery, WebhookStore } from '../../src/updater/webhooks/ports';
import { WebhookDeliverer } from '../../src/updater/webhooks/deliverer';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { REPO_ROOT } from '../support/env';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { captureLog } from '../support/log-capture';
import { newPan } from '../support/pans';

jest.setTimeout(60_000);

/** The value of one series in a scrape, or undefined when it is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? '').split(',').filter(Boolean);
    if (wanted.length === have.length && wanted.every((w) => have.includes(w))) return Number(match[3]);
  }
  return undefined;
}

/** Every label value in a scrape, for the check that none of them carries data. */
function labelValues(text: string): string[] {
  return [...text.matchAll(/[a-zA-Z_]+="([^"]*)"/g)].map((m) => m[1]!);
}

describe('the vault on METRICS_PORT', () => {
  let fresh: FreshDatabase;
  let dir: string;
  let vault: RunningVault;
  let api: string;
  let scrapeUrl: string;
  const secrets: string[] = [];

  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_metrics');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-metrics-'));
    // The shipped roles, the merchant allowed 2 reads a minute, so one more is refused.
    const policiesDir = path.join(dir, 'policies');
    fs.cpSync(path.join(REPO_ROOT, 'policies'), policiesDir, { recursive: true });
    const merchant = path.join(policiesDir, 'merchant.yaml');
    fs.writeFileSync(merchant, fs.readFileSync(merchant, 'utf8').replace(/read: \d+/, 'read: 2'));
    const config = loadConfig(
      {
        DATABASE_URL: fresh.url,
        HOST: '127.0.0.1',
        PORT: '0',
        METRICS_HOST: '127.0.0.1',
        METRICS_PORT: '0',
        DEMO_PORT: 'off',
        UPDATER_WORKER: 'off',
        POLICIES_DIR: policiesDir,
        VAULT_DATA_DIR: path.join(dir, '.vault'),
      },
      dir,
    );
    vault = await startVault(config, createLogger({ level: 'info', destination: captureLog() }));
    api = `http://127.0.0.1:${(vault.server.address() as { port: number }).port}`;
    expect(vault.metricsServer).toBeDefined();
    expect(vault.metricsServer!.port).not.toBe((vault.server.address() as { port: number }).port);
    scrapeUrl = `http://127.0.0.1:${vault.metricsServer!.port}/metrics`;
  });
  afterAll(async () => {
    await vault?.stop();
    await fresh?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts tokenize, detokenize, failed authentication and 429s, and the scrape holds no card, token, key or tenant', async () => {
    const credentials = JSON.parse(fs.readFileSync(path.join(dir, '.vault', 'credentials.json'), 'utf8')) as { tenant: string; api_keys: Record<string, string> };
    const merchant = bearer(credentials.api_keys.merchant!);
    const payments = bearer(credentials.api_keys.payments!);
    secrets.push(...Object.values(credentials.api_keys));

    const pans = [newPan(), newPan('555555')];
    secrets.push(...pans);
    const tokens: string[] = [];
    for (const pan of pans) {
      const res = await request(api).post('/v1/tokens').set(merchant).send(cardBody(pan));
      expect(res.status).toBe(201);
      tokens.push(res.body.token);
    }
    secrets.push(...tokens);
    for (const expected of [200, 200, 429]) expect((await request(api).get(`/v1/tokens/${tokens[0]}`).set(merchant)).status).toBe(expected);
    const revealed = await request(api).post(`/v1/tokens/${tokens[1]}/detokenize`).set(payments).send({ purpose: 'authorization' });
    expect(revealed.status).toBe(200);
    expect(revealed.body.card.number).toBe(pans[1]);
    // Refusals a route throws reach the app's error handler with the router's base path unwound: still their route.
    expect((await request(api).post(`/v1/tokens/${tokens[1]}/detokenize`).set(merchant).send({ purpose: 'authorization' })).status).toBe(403);
    expect((await request(api).delete(`/v1/tokens/${tokens[0]}`).set(payments)).status).toBe(403);

    // The API port has no /metrics: an anonymous scraper there gets the vault's 404.
    const onApi = await request(api).get('/metrics');
    expect(onApi.status).toBe(404);
    expect(onApi.text).not.toContain('http_requests_total');

    // Routing ignores case; the route label must not follow the caller's spelling (one series, not 2^n).
    for (const spelling of ['/hosted/tokens', '/HoStEd/ToKeNs', '/HOSTED/tokens']) expect((await request(api).get(spelling)).status).toBe(405);

    // Last: once an address has used up its failed authentications, it is turned away before any key lookup.
    const badKey = `cvk_${'B'.repeat(43)}`;
    secrets.push(badKey);
    for (let i = 0; i < FAILED_AUTH_PER_MINUTE; i++) expect((await request(api).get(`/v1/tokens/${tokens[0]}`).set(bearer(badKey))).status).toBe(401);
    expect((await request(api).get(`/v1/tokens/${tokens[0]}`).set(bearer(badKey))).status).toBe(429);

    const scrape = await fetch(scrapeUrl);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await scrape.text();

    const requests = (labels: Record<string, string>) => sample(text, 'http_requests_total', labels);
    expect(requests({ method: 'POST', route: '/v1/tokens/', status: '201' })).toBe(2);
    expect(requests({ method: 'GET', route: '/v1/tokens/:token', status: '200' })).toBe(2);
    expect(requests({ method: 'GET', route: '/v1/tokens/:token', status: '429' })).toBe(1);
    expect(requests({ method: 'POST', route: '/v1/tokens/:token/detokenize', status: '200' })).toBe(1);
    expect(requests({ method: 'POST', route: '/v1/tokens/:token/detokenize', status: '403' })).toBe(1);
    expect(requests({ method: 'DELETE', route: '/v1/tokens/:token', status: '403' })).toBe(1);
    expect(text).not.toMatch(/route="\/:token/);
    // Refused before any route matched: counted under `unmatched`, never under the URL.
    expect(requests({ method: 'GET', route: 'unmatched', status: '401' })).toBe(FAILED_AUTH_PER_MINUTE);
    expect(requests({ method: 'GET', route: 'unmatched', status: '429' })).toBe(1);
    expect(requests({ method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(requests({ method: 'GET', route: '/hosted/tokens/', status: '405' })).toBe(3);
    expect(text).not.toMatch(/route="[^"]*[A-Z]/);
    expect(sample(text, 'http_request_duration_seconds_count', { method: 'POST', route: '/v1/tokens/', status: '201' })).toBe(2);
    expect(sample(text, 'http_request_duration_seconds_bucket', { method: 'POST', route: '/v1/tokens/', status: '201', le: '+Inf' })).toBe(2);

    expect(sample(text, 'rate_limit_rejections_total', { action: 'read' })).toBe(1);
    expect(sample(text, 'rate_limit_rejections_total', { action: 'failed_auth' })).toBe(1);

    // Signing and encryption keys, the demo tenant's fingerprint key, the first sealing key; each unwrap of a cold key.
    expect(sample(text, 'kms_requests_total', { operation: 'generate_data_key', outcome: 'success' })).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'kms_requests_total', { operation: 'decrypt_data_key', outcome: 'success' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'kms_request_duration_seconds_count', { operation: 'generate_data_key' })).toBe(
      sample(text, 'kms_requests_total', { operation: 'generate_data_key', outcome: 'success' }),
    );
    // The fingerprint key: a miss for the first tokenize, hits after; the detokenize finds its sealing key cached.
    expect(sample(text, 'data_key_cache_lookups_total', { result: 'miss' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'data_key_cache_lookups_total', { result: 'hit' })).toBeGreaterThanOrEqual(2);

    expect(sample(text, 'audit_write_duration_seconds_count')).toBeGreaterThanOrEqual(5);
    expect(sample(text, 'audit_batch_size_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'audit_batch_size_sum')).toBe(sample(text, 'audit_write_duration_seconds_count'));

    // Process and Node.js defaults, in the same registry.
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    for (const name of ['updater_outcomes_total', 'updater_runs_total', 'webhook_deliveries_total']) expect(text).toContain(`# TYPE ${name} counter`);

    for (const secret of secrets) expect(text).not.toContain(secret);
    const values = labelValues(text);
    expect(values).not.toContain(credentials.tenant);
    for (const value of values) expect(value).not.toMatch(/[0-9]{12}|cvk_|tok_/);
    expect(text).not.toMatch(/tenant|api_key/);
  });

  it('serves only GET /metrics on its port', async () => {
    const base = scrapeUrl.replace(/\/metrics$/, '');
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/v1/tokens`)).status).toBe(404);
    const post = await fetch(scrapeUrl, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${scrapeUrl}?name[]=x`)).status).toBe(200);
  });
});

describe('METRICS_PORT=off', () => {
  it('starts no metrics listener', async () => {
    const fresh = await freshDatabase('cardvault_metrics_off');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-metrics-off-'));
    try {
      const config = loadConfig(
        { DATABASE_URL: fresh.url, HOST: '127.0.0.1', PORT: '0', METRICS_PORT: 'off', DEMO_PORT: 'off', UPDATER_WORKER: 'off', RATE_LIMITS: 'off', VAULT_DATA_DIR: path.join(dir, '.vault') },
        dir,
      );
      expect(config.metrics).toBeUndefined();
      const vault = await startVault(config, createLogger({ level: 'info', destination: captureLog() }));
      expect(vault.metricsServer).toBeUndefined();
      await vault.stop();
    } finally {
      await fresh.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the worker side', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await buildHarness();
  });
  afterAll(() => h.close());

  it('counts account-updater answers by network and outcome after each committed chunk, and finished runs', async () => {
    const metrics = createMetrics();
    const instrumented = assembleUpdater({
      db: h.db,
      keyring: h.parts.keyring,
      tenants: h.parts.tenants,
      audit: h.parts.audit,
      log: h.log,
      options: { network: 'simulator', dropDir: h.updaterDropDir, pollSeconds: 1, lockTtlSeconds: 30, applyChunk: 4, responseTimeoutHours: 72, auditSweepSeconds: 60 },
      metrics,
    });
    const { tenant, keys } = await h.tenant(['merchant']);
    const merchant = bearer(keys.merchant!);
    const settings = await request(h.app).put('/v1/account-updater/settings').set(merchant).send({ networks: { visa: { merchant_id: 'M-VISA-1' }, mastercard: { merchant_id: 'M-MC-1' } } });
    expect(settings.status).toBe(200);
    const pans = [...Array.from({ length: 6 }, () => newPan('411111')), ...Array.from({ length: 4 }, () => newPan('555555'))];
    for (const pan of pans) {
      const token = (await request(h.app).post('/v1/tokens').set(merchant).send(cardBody(pan))).body.token as string;
      expect((await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(merchant).send({ enrolled: true, consent_reference: 'consent-m' })).status).toBe(200);
    }
    const started = await request(h.app).post('/v1/account-updater/runs').set(merchant).send({});
    expect(started.status).toBe(202);
    await instrumented.worker.tick(tenant.id);
    expect((await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(merchant)).body.state).toBe('completed');

    const text = await metrics.registry.metrics();
    const byNetwork = (network: string) =>
      text
        .split('\n')
        .filter((line) => line.startsWith(`updater_outcomes_total{network="${network}",`))
        .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    expect(byNetwork('visa')).toBe(6);
    expect(byNetwork('mastercard')).toBe(4);
    for (const line of text.split('\n').filter((l) => l.startsWith('updater_outcomes_total{'))) {
      expect(line).toMatch(/^updater_outcomes_total\{network="(visa|mastercard)",outcome="[a-z_]+"\} \d+$/);
    }
    expect(sample(text, 'updater_runs_total', { state: 'completed' })).toBe(1);
    for (const pan of pans) expect(text).not.toContain(pan);
    expect(text).not.toContain(tenant.name);
  });

  it('counts webhook deliveries as delivered, retried or dead', async () => {
    const metrics = createMetrics();
    const row = (id: string, overrides: Partial<ClaimedDelivery> = {}): ClaimedDelivery => ({
      id,
      eventId: `evt_${id}`,
      eventType: 'card.updated',
      tenantId: 'tenant',
      endpointId: 'endpoint',
      // Nothing listens on port 9 of loopback: the attempt fails at once.
      url: 'http://127.0.0.1:9/hook',
      sealedSecret: { dataKeyId: 'k', iv: Buffer.alloc(12), tag: Buffer.alloc(16), ciphertext: Buffer.alloc(1) },
      payload: {},
      attempts: 0,
      endpointDisabled: false,
      ...overrides,
    });
    const store = {
      claimDue: async () => [row('1'), row('2', { attempts: 7 }), row('3', { endpointDisabled: true })],
      recordFailure: async () => undefined,
      markDead: async () => undefined,
    } as unknown as WebhookStore;
    const deliverer = new WebhookDeliverer({
      store,
      crypto: { openWebhookSecret: async () => new Secret('whsec_test') },
      log: h.log,
      // The receiver listens on 127.0.0.1.
      allowInternalAddresses: true,
      options: { maxAttempts: 8, timeoutMs: 2_000 },
      onDelivery: metrics.webhookDelivery,
    });
    expect(await deliverer.deliverDue()).toEqual({ delivered: 0, retried: 1, dead: 2 });
    const text = await metrics.registry.metrics();
    expect(sample(text, 'webhook_deliveries_total', { result: 'retried' })).toBe(1);
    expect(sample(text, 'webhook_deliveries_total', { result: 'dead' })).toBe(2);
  });

  it('counts and times KMS calls by operation and outcome, passing results and errors through', async () => {
    const metrics = createMetrics();
    const kms = instrumentKms(h.kms, metrics);
    expect(kms.provider).toBe(h.kms.provider);
    const key = await kms.generateDataKey({ tenantId: 'metrics-test', purpose: 'card-data' });
    expect(await kms.decryptDataKey(key.wrapped, { tenantId: 'metrics-test', purpose: 'card-data' })).toEqual(key.plaintext);
    // Another tenant's context: the KMS refuses, and the refusal is what the caller sees.
    await expect(kms.decryptDataKey(key.wrapped, { tenantId: 'someone-else', purpose: 'card-data' })).rejects.toThrow();
    const text = await metrics.registry.metrics();
    expect(sample(text, 'kms_requests_total', { operation: 'generate_data_key', outcome: 'success' })).toBe(1);
    expect(sample(text, 'kms_requests_total', { operation: 'decrypt_data_key', outcome: 'success' })).toBe(1);
    expect(sample(text, 'kms_requests_total', { operation: 'decrypt_data_key', outcome: 'failure' })).toBe(1);
    expect(sample(text, 'kms_request_duration_seconds_count', { operation: 'decrypt_data_key' })).toBe(2);
  });

  it('keeps each registry to itself: two in one process, none in the global default', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.rateLimitRejection('read');
    expect(sample(await a.registry.metrics(), 'rate_limit_rejections_total', { action: 'read' })).toBe(1);
    expect(sample(await b.registry.metrics(), 'rate_limit_rejections_total', { action: 'read' })).toBeUndefined();
    expect((await register.metrics()).trim()).toBe('');
  });
});
