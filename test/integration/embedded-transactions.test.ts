// PGlite runs one transaction at a time: a transaction that needs the pool (a new data key, a key or view re-read)
// would wait for itself and freeze the embedded vault. Each request here needs exactly that, and must be answered.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deriveNewPan } from '../../src/updater/network/simulator';
import { ensureBuilt } from '../support/build';
import { REPO_ROOT } from '../support/env';
import { startEmbeddedVault, type EmbeddedVault } from '../support/embedded-vault';
import { newPan, recordPan } from '../support/pans';

/** Far above what each request takes; a frozen vault fails the test here instead of at the suite's timeout. */
const REQUEST_TIMEOUT_MS = 10_000;

// PGlite takes seconds to start, and each test starts a vault of its own.
jest.setTimeout(90_000);

let tmpDir: string;
let vault: EmbeddedVault | undefined;

beforeAll(async () => {
  await ensureBuilt();
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-embedded-tx-'));
}, 180_000);

afterEach(async () => {
  await vault?.stop();
  vault = undefined;
});

afterAll(() => {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** A fresh vault of its own for each test: one frozen by a test must not fail the next. */
async function freshVault(env: Record<string, string> = {}): Promise<EmbeddedVault> {
  // One use per data key: every seal takes a new key (insert and audit), every second open re-reads its key.
  vault = await startEmbeddedVault(fs.mkdtempSync(path.join(tmpDir, 'vault-')), { DATA_KEY_MAX_USES: '1', ...env });
  return vault;
}

async function send(method: string, urlPath: string, role: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${vault!.baseUrl}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${vault!.apiKeys[role]!}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const ready = async () => (await fetch(`${vault!.baseUrl}/readyz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).status;

it('answers the first tokenize of a tenant that carries an Idempotency-Key, and its retry, without freezing', async () => {
  await freshVault();
  const card = { number: newPan(), exp_month: 12, exp_year: 2031 };
  const first = await send('POST', '/v1/tokens', 'merchant', { card }, { 'Idempotency-Key': 'first-keyed-tokenize' });
  expect(first.status).toBe(201);
  const retried = await send('POST', '/v1/tokens', 'merchant', { card }, { 'Idempotency-Key': 'first-keyed-tokenize' });
  expect(retried.body.token).toBe(first.body.token);
  // A batch of keyed requests at once, each needing a data key of its own.
  const burst = await Promise.all(
    Array.from({ length: 8 }, (_, i) => send('POST', '/v1/tokens', 'merchant', { card: { ...card, number: newPan() } }, { 'Idempotency-Key': `burst-${i}` })),
  );
  expect(burst.map((r) => r.status)).toEqual(Array(8).fill(201));
  expect(await ready()).toBe(200);
});

it('applies a real-time refresh that gives the card a new number without freezing', async () => {
  await freshVault();
  expect((await send('PUT', '/v1/account-updater/settings', 'merchant', { networks: { visa: { merchant_id: 'M-VISA-1' } } })).status).toBe(200);
  // The simulator's rules reissue Visa's published 4242 test card.
  const pan = '4242424242424242';
  const tokenized = await send('POST', '/v1/tokens', 'merchant', { card: { number: pan, exp_month: 12, exp_year: 2031 } });
  expect(tokenized.status).toBe(201);
  const token = tokenized.body.token as string;
  expect((await send('PUT', `/v1/tokens/${token}/account-updater`, 'merchant', { enrolled: true, consent_reference: 'consent-ab' })).status).toBe(200);

  const refreshed = await send('POST', `/v1/tokens/${token}/refresh`, 'merchant');
  expect(refreshed.status).toBe(200);
  expect(refreshed.body).toMatchObject({ outcome: 'new_account', updates: [{ event: 'card.updated', version: 2 }] });
  const revealed = await send('POST', `/v1/tokens/${token}/detokenize`, 'payments', { purpose: 'authorization' });
  expect(revealed.body.card.number).toBe(recordPan(deriveNewPan(pan)));
  expect(await ready()).toBe(200);
});

it('applies a run through the in-process worker, a new number among its answers, without freezing', async () => {
  await freshVault({ UPDATER_POLL_SECONDS: '1' });
  expect((await send('PUT', '/v1/account-updater/settings', 'merchant', { networks: { visa: { merchant_id: 'M-VISA-1' } } })).status).toBe(200);
  const pan = '4242424242424242';
  const tokens: string[] = [];
  for (const number of [pan, newPan(), newPan()]) {
    const tokenized = await send('POST', '/v1/tokens', 'merchant', { card: { number, exp_month: 12, exp_year: 2031 } });
    expect(tokenized.status).toBe(201);
    tokens.push(tokenized.body.token as string);
    expect((await send('PUT', `/v1/tokens/${tokenized.body.token}/account-updater`, 'merchant', { enrolled: true, consent_reference: 'consent-ab' })).status).toBe(200);
  }

  const started = await send('POST', '/v1/account-updater/runs', 'merchant', {});
  expect(started.status).toBe(202);
  let run = started.body;
  for (let waited = 0; run.state !== 'completed' && run.state !== 'failed' && waited < 30_000; waited += 250) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    run = (await send('GET', `/v1/account-updater/runs/${started.body.id}`, 'merchant')).body;
  }
  expect(run).toMatchObject({ state: 'completed', progress: { done: 3, total: 3 } });
  const revealed = await send('POST', `/v1/tokens/${tokens[0]}/detokenize`, 'payments', { purpose: 'authorization' });
  expect(revealed.body.card.number).toBe(recordPan(deriveNewPan(pan)));
  expect(await ready()).toBe(200);
});

it('fails a pool statement made from inside an open transaction at once, and serves the pool again once it ends', () => {
  // The compiled Db in a child process, as above; it prints what the statement inside answered, then one after.
  const script = `
    const { openEmbedded } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'store', 'db.js'))});
    (async () => {
      const db = await openEmbedded({ dataDir: process.argv[1] });
      const inside = await db.transaction(async (tx) => {
        await tx.query('SELECT 1');
        const viaPool = await db.query('SELECT 1').then(() => 'answered', (err) => err.message);
        const nested = await db.transaction(async () => 'answered').catch((err) => err.message);
        return { viaPool, nested };
      });
      const after = await db.query('SELECT 1 AS one');
      await db.close();
      process.stdout.write(JSON.stringify({ inside, after }));
    })();
  `;
  const child = spawnSync(process.execPath, ['-e', script, fs.mkdtempSync(path.join(tmpDir, 'pgdata-'))], { encoding: 'utf8', timeout: 30_000 });
  expect(child.stderr).toBe('');
  const refused = expect.stringContaining('from inside an open transaction');
  expect(JSON.parse(child.stdout)).toEqual({ inside: { viaPool: refused, nested: refused }, after: [{ one: 1 }] });
});
