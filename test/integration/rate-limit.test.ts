// Rate limits on the real Redis: per key and action, failed authentication per address, shared across instances, Redis outages.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { freePort } from '../support/free-port';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { DEFAULT_RATE_LIMITS, type Policies } from '../../src/domain/policy';
import { rateLimiters } from '../../src/http/rate-limit';
import { createHttpServer } from '../../src/http/server';
import { loadPolicies, PolicyError } from '../../src/policy/load-policies';
import { createLogger } from '../../src/log';
import { RateLimitStore } from '../../src/store/rate-limit-store';
import { REPO_ROOT, TEST_REDIS_URL } from '../support/env';
import { buildHarness, type Harness, type HarnessOptions } from '../support/harness';
import { bearer, cardBody, countCards } from '../support/http';
import { captureLog } from '../support/log-capture';
import { newPan } from '../support/pans';
import { waitFor } from '../support/wait-for';

jest.setTimeout(60_000);

// Every run (and every suite in it) counts under its own keys, so a rerun within the minute starts from zero.
const RUN_PREFIX = `cardvault:rl:test-${randomUUID()}:`;
const UNKNOWN_KEY = `cvk_${'A'.repeat(43)}`;

const dirs: string[] = [];
const stores: RateLimitStore[] = [];
const harnesses: Harness[] = [];

afterAll(async () => {
  for (const h of harnesses) await h.close();
  for (const store of stores) await store.close();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function policyDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-rl-policies-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

/** `tight` sets small limits on tokenize and read; `plain` sets none, so it gets the defaults. */
const policies: Policies = loadPolicies(
  policyDir({
    'tight.yaml': [
      'role: tight',
      'actions: [tokenize, read]',
      'rate_limits:',
      '  per_minute:',
      '    tokenize: 3',
      '    read: 5',
    ].join('\n'),
    'plain.yaml': [
      'role: plain',
      'actions: [tokenize, read, detokenize]',
      'detokenize:',
      '  purposes: [authorization]',
      '  reveal: [number]',
    ].join('\n'),
  }),
);

function limitedStore(options: { redisUrl?: string; prefix?: string } = {}): RateLimitStore {
  const store = new RateLimitStore({ redisUrl: options.redisUrl ?? TEST_REDIS_URL, prefix: options.prefix ?? RUN_PREFIX, probeIntervalMs: 100 });
  stores.push(store);
  return store;
}

async function limitedHarness(store: RateLimitStore, extra: HarnessOptions = {}): Promise<Harness> {
  const log = createLogger({ level: 'info', destination: captureLog() });
  const h = await buildHarness({ policies, rateLimitStore: store, rateLimits: rateLimiters({ stores: store, log }), ...extra });
  harnesses.push(h);
  return h;
}

const tokenize = (app: Harness['app'], key: string) => request(app).post('/v1/tokens').set(bearer(key)).send(cardBody(newPan()));

function expectRateLimited(res: request.Response, policy: string, quota: number): void {
  expect(res.status).toBe(429);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ type: 'urn:cardvault:problem:rate_limited', status: 429, code: 'rate_limited' });
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThanOrEqual(0);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(res.headers['ratelimit']).toMatch(new RegExp(`^"${policy}"; r=0; t=\\d+$`));
  expect(res.headers['ratelimit-policy']).toMatch(new RegExp(`^"${policy}"; q=${quota}; w=60; pk=:[A-Za-z0-9+/=]+:$`));
}

describe('per-key limits per action', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await limitedHarness(limitedStore());
  });

  it('answers the (limit+1)th request with 429 rate_limited problem+json, Retry-After and RateLimit headers', async () => {
    const { tenant, keys } = await h.tenant(['tight']);
    for (let i = 1; i <= 3; i += 1) {
      const res = await tokenize(h.app, keys.tight!);
      expect(res.status).toBe(201);
      expect(res.headers['ratelimit']).toMatch(new RegExp(`^"tokenize"; r=${3 - i}; t=\\d+$`));
    }
    expectRateLimited(await tokenize(h.app, keys.tight!), 'tokenize', 3);
    expect(await countCards(h.db, tenant.id)).toBe(3);
  });

  it('counts per API key: another key of the same role keeps its whole budget', async () => {
    const { tenant } = await h.tenant([]);
    const first = (await h.parts.principals.issueApiKey(tenant.id, 'tight', 'test')).secret.reveal();
    const second = (await h.parts.principals.issueApiKey(tenant.id, 'tight', 'test')).secret.reveal();
    for (let i = 0; i < 3; i += 1) expect((await tokenize(h.app, first)).status).toBe(201);
    expect((await tokenize(h.app, first)).status).toBe(429);
    const other = await tokenize(h.app, second);
    expect(other.status).toBe(201);
    expect(other.headers['ratelimit']).toMatch(/^"tokenize"; r=2; /);
  });

  it('counts per action: an exhausted tokenize budget leaves read alone, and read has its own limit', async () => {
    const { keys } = await h.tenant(['tight']);
    let token = '';
    for (let i = 0; i < 3; i += 1) token = (await tokenize(h.app, keys.tight!)).body.token;
    expect((await tokenize(h.app, keys.tight!)).status).toBe(429);
    for (let i = 0; i < 5; i += 1) expect((await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.tight!))).status).toBe(200);
    expectRateLimited(await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.tight!)), 'read', 5);
  });

  it('refuses a request over the limit before reading its body: no JWE decrypted, no JSON parsed', async () => {
    let decrypts = 0;
    const keys = h.parts.clientEncryption;
    const app = h.appWith({
      clientEncryption: {
        decrypt: (...args: Parameters<typeof keys.decrypt>) => ((decrypts += 1), keys.decrypt(...args)),
        jwks: () => keys.jwks(),
      },
    });
    const { tenant, keys: apiKeys } = await h.tenant(['tight']);
    for (let i = 0; i < 3; i += 1) expect((await tokenize(app, apiKeys.tight!)).status).toBe(201);
    // Read, either would be a 400 (invalid_jwe, malformed_json): the 429 shows neither was.
    const jwe = await request(app).post('/v1/tokens').set(bearer(apiKeys.tight!)).set('Content-Type', 'application/jose').send('a.b.c.d.e');
    expectRateLimited(jwe, 'tokenize', 3);
    expect(decrypts).toBe(0);
    const json = await request(app).post('/v1/tokens').set(bearer(apiKeys.tight!)).set('Content-Type', 'application/json').send('{"card":');
    expectRateLimited(json, 'tokenize', 3);
    expect(await countCards(h.db, tenant.id)).toBe(3);
  });

  it('checks the role before the limit: a key without the action gets 403 and spends no budget, on every router', async () => {
    const { keys } = await h.tenant(['tight']);
    for (const url of ['/v1/audit/checkpoint', '/v1/webhook-endpoints', '/v1/webhook-deliveries', '/v1/tokens/not-a-token/detokenize']) {
      const call = url.endsWith('/detokenize') ? request(h.app).post(url).send({ purpose: 'authorization' }) : request(h.app).get(url);
      const res = await call.set(bearer(keys.tight!));
      expect({ url, status: res.status, limited: res.headers['ratelimit'] !== undefined }).toEqual({ url, status: 403, limited: false });
    }
  });

  it('gives a role without rate_limits the defaults, detokenize the stricter one', async () => {
    const { keys } = await h.tenant(['plain']);
    const created = await tokenize(h.app, keys.plain!);
    expect(created.headers['ratelimit-policy']).toMatch(/^"tokenize"; q=1200; /);
    const read = await request(h.app).get(`/v1/tokens/${created.body.token}`).set(bearer(keys.plain!));
    expect(read.headers['ratelimit-policy']).toMatch(/^"read"; q=1200; /);
    const revealed = await request(h.app).post(`/v1/tokens/${created.body.token}/detokenize`).set(bearer(keys.plain!)).send({ purpose: 'authorization' });
    expect(revealed.status).toBe(200);
    expect(revealed.headers['ratelimit-policy']).toMatch(/^"detokenize"; q=600; /);
    expect(DEFAULT_RATE_LIMITS.detokenize).toBeLessThan(DEFAULT_RATE_LIMITS.read);
  });
});

describe('failed authentication per source address', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await limitedHarness(limitedStore(), { trustProxy: 1 });
  });
  const from = (address: string, key: string) => request(h.app).get('/v1/tokens/tok_unknownunknown01').set(bearer(key)).set('X-Forwarded-For', address);

  it('refuses an address with 429 after 20 failures, before looking at its key, while another address is unaffected', async () => {
    const { keys } = await h.tenant(['tight']);
    for (let i = 0; i < 20; i += 1) expect((await from('198.51.100.7', UNKNOWN_KEY)).status).toBe(401);
    expectRateLimited(await from('198.51.100.7', UNKNOWN_KEY), 'failed_auth', 20);
    // Even a valid key is refused from there: the address is turned away before authentication.
    expectRateLimited(await from('198.51.100.7', keys.tight!), 'failed_auth', 20);
    expect((await from('198.51.100.8', keys.tight!)).status).toBe(404);
    expect((await from('198.51.100.8', UNKNOWN_KEY)).status).toBe(401);
  });

  it("counts a revoked key's 401 as a failed authentication, as an unknown key's", async () => {
    const { tenant, keys } = await h.tenant(['tight']);
    const [record] = await h.parts.tenants.listApiKeys(tenant.id);
    expect(await h.parts.principals.revokeApiKey(record!.id, 'test')).toBe(true);
    for (let i = 0; i < 20; i += 1) expect((await from('198.51.100.10', keys.tight!)).status).toBe(401);
    expectRateLimited(await from('198.51.100.10', keys.tight!), 'failed_auth', 20);
  });

  it('counts a failure whose client hung up before its 401: a key lookup and an auth.failure event all the same', async () => {
    const server = createHttpServer(h.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const address = '198.51.100.11';
      const head = `GET /v1/tokens/tok_unknownunknown01 HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer ${UNKNOWN_KEY}\r\nX-Forwarded-For: ${address}\r\n\r\n`;
      for (let i = 0; i < 20; i += 1) {
        await new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => socket.write(head, () => (socket.destroy(), resolve())));
          socket.once('error', reject);
        });
      }
      const failures = `${RUN_PREFIX}failed_auth:${address}`;
      await waitFor(async () => (await redisCli(Number(new URL(TEST_REDIS_URL).port || 6379), 'GET', failures)).trim() === '20', 5_000);
      expectRateLimited(await from(address, UNKNOWN_KEY), 'failed_auth', 20);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('counts only failures: many authenticated requests from one address are never refused', async () => {
    const { keys } = await h.tenant(['plain']);
    for (let i = 0; i < 30; i += 1) expect((await from('198.51.100.9', keys.plain!)).status).toBe(404);
  });
});

describe('two instances sharing Redis', () => {
  it('draw on one budget: requests alternated across them are limited as if sent to one', async () => {
    const prefix = `${RUN_PREFIX}shared:`;
    const a = await limitedHarness(limitedStore({ prefix }));
    const b = await limitedHarness(limitedStore({ prefix }));
    const { keys } = await a.tenant(['tight']);
    const statuses: number[] = [];
    for (const app of [a.app, b.app, a.app, b.app, a.app]) statuses.push((await tokenize(app, keys.tight!)).status);
    expect(statuses).toEqual([201, 201, 201, 429, 429]);
  });
});

describe('Redis stopped mid-test', () => {
  let port: number;
  let redis: ChildProcess;
  let store: RateLimitStore;
  let h: Harness;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    store = limitedStore({ redisUrl: `redis://127.0.0.1:${port}` });
    h = await limitedHarness(store);
  });
  afterAll(async () => {
    await stopRedis(redis);
  });

  it('keeps answering, limits from memory, reports degraded, and recovers when Redis returns', async () => {
    const { tenant } = await h.tenant([]);
    const { key: record, secret } = await h.parts.principals.issueApiKey(tenant.id, 'tight', 'test');
    const key = secret.reveal();

    expect((await tokenize(h.app, key)).status).toBe(201);
    expect((await request(h.app).get('/readyz')).body.checks.rate_limits).toBeUndefined();
    // The counter is keyed by the API key's id, never by its secret.
    const redisKeys = (await redisCli(port, 'KEYS', `${RUN_PREFIX}*`)).trim().split('\n');
    expect(redisKeys).toEqual([`${RUN_PREFIX}tokenize:${record.id}`]);
    expect(redisKeys.join()).not.toContain(key.slice(4));

    await stopRedis(redis);
    // Memory starts its own count: three more, then the limit holds.
    for (let i = 0; i < 3; i += 1) expect((await tokenize(h.app, key)).status).toBe(201);
    expectRateLimited(await tokenize(h.app, key), 'tokenize', 3);
    const degraded = await request(h.app).get('/readyz');
    expect(degraded.status).toBe(200);
    expect(degraded.body).toEqual({ status: 'ready', checks: { database: 'ok', rate_limits: 'degraded' } });

    redis = await startRedis(port);
    await waitFor(async () => (await request(h.app).get('/readyz')).body.checks.rate_limits === undefined);
    expect(store.degraded()).toBe(false);
    // The restarted Redis has no memory of the earlier window: counting resumes there.
    const resumed = await tokenize(h.app, key);
    expect(resumed.status).toBe(201);
    expect(resumed.headers['ratelimit']).toMatch(/^"tokenize"; r=2; /);
  });
});

describe('rate_limits in policies/', () => {
  it('ships explicit per-minute limits for every granted action', () => {
    const shipped = loadPolicies(path.join(REPO_ROOT, 'policies'));
    const limits = Object.fromEntries([...shipped].map(([name, role]) => [name, Object.fromEntries(role.rateLimits!)]));
    expect(limits).toEqual({
      admin: { admin: 60, read: 600, 'audit.read': 60 },
      auditor: { 'audit.read': 60 },
      merchant: { tokenize: 1200, read: 1200, update: 600, delete: 600, updater: 600, webhooks: 60 },
      payments: { detokenize: 600 },
    });
  });

  it.each([
    ['a limit on an action the role does not grant', 'tokenize: 5', /x\.yaml: field \/rate_limits\/per_minute\/tokenize .*does not grant/],
    ['a limit below 1', 'read: 0', /x\.yaml: field \/rate_limits\/per_minute\/read: must be >= 1/],
    ['a fractional limit', 'read: 1.5', /x\.yaml: field \/rate_limits\/per_minute\/read: must be integer/],
    ['an unknown action', 'refund: 5', /x\.yaml: field \/rate_limits\/per_minute: must NOT have additional properties \(refund\)/],
  ])('refuses %s, naming file and field', (_name, line, message) => {
    const dir = policyDir({ 'x.yaml': ['role: x', 'actions: [read]', 'rate_limits:', '  per_minute:', `    ${line}`].join('\n') });
    expect(() => loadPolicies(dir)).toThrow(PolicyError);
    expect(() => loadPolicies(dir)).toThrow(message);
  });
});

// --- a Redis of our own, on a free port, that this suite may stop --------------------------------------------


function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on ${port}: ${output}`)), 10_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
  });
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function redisCli(port: number, ...args: string[]): Promise<string> {
  return (await promisify(execFile)('redis-cli', ['-p', String(port), ...args])).stdout;
}

