// The zero-setup default: with no settings the compiled vault runs on embedded PGlite with a local KMS key file.
// It runs as a child process: PGlite's bundle calls import(), which jest's VM refuses without --experimental-vm-modules.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnListeningVault } from '../support/embedded-vault';
import { postJson } from '../support/http';
import { newPan } from '../support/pans';
import { ensureBuilt } from '../support/build';

// PGlite takes seconds to start; the file starts the vault twice.
jest.setTimeout(120_000);

const ROLES = ['admin', 'auditor', 'merchant', 'payments'];
const API_KEY = /^cvk_[A-Za-z0-9_-]{43}$/;

interface Running {
  child: ChildProcess;
  baseUrl: string;
  /** Everything the vault wrote to stdout (its log) and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
}

let tmpDir: string;
let running: Running | undefined;

beforeAll(async () => {
  await ensureBuilt();
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-embedded-'));
}, 180_000);

afterAll(async () => {
  try {
    await stopVault('SIGKILL');
  } finally {
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
});

/** `npm start` with an empty environment, from a fresh directory; resolves once the log says it listens. */
async function startVault(): Promise<Running> {
  const { child, port, output, exited } = await spawnListeningVault(tmpDir);
  running = { child, baseUrl: `http://127.0.0.1:${port}`, output, exited };
  return running;
}

async function stopVault(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const current = running;
  running = undefined;
  if (!current || current.child.exitCode !== null || current.child.signalCode !== null) return current?.child.exitCode ?? null;
  current.child.kill(signal);
  return current.exited;
}

const mode = (file: string) => fs.statSync(file).mode & 0o777;

it('starts with no settings, writes 0600 demo credentials and key file, and keeps cards and keys across a restart', async () => {
  const vaultDir = path.join(tmpDir, '.vault');
  const credentialsFile = path.join(vaultDir, 'credentials.json');
  const kmsKeyFile = path.join(vaultDir, 'local-kms.key');

  // First start: everything is created under <cwd>/.vault.
  const first = await startVault();
  expect((await fetch(`${first.baseUrl}/healthz`)).status).toBe(200);
  expect(fs.existsSync(path.join(vaultDir, 'pgdata'))).toBe(true);
  expect(mode(vaultDir)).toBe(0o700);

  expect(mode(credentialsFile)).toBe(0o600);
  const credentialsText = fs.readFileSync(credentialsFile, 'utf8');
  const credentials = JSON.parse(credentialsText) as { tenant: string; api_keys: Record<string, string> };
  expect(Object.keys(credentials).sort()).toEqual(['api_keys', 'tenant']);
  expect(credentials.tenant).toBe('demo');
  expect(Object.keys(credentials.api_keys).sort()).toEqual(ROLES);
  const keys = Object.values(credentials.api_keys);
  for (const key of keys) expect(key).toMatch(API_KEY);
  expect(new Set(keys).size).toBe(ROLES.length);

  expect(mode(kmsKeyFile)).toBe(0o600);
  expect(fs.statSync(kmsKeyFile).size).toBe(32);

  const firstLog = first.output();
  expect(firstLog).toContain(credentialsFile);
  for (const key of keys) {
    expect(firstLog).not.toContain(key.slice('cvk_'.length));
  }

  const pan = newPan();
  const card = { number: pan, exp_month: 12, exp_year: 2031 };
  const tokenized = await postJson(first.baseUrl, '/v1/tokens', credentials.api_keys.merchant!, { card });
  expect(tokenized.status).toBe(201);
  const token = tokenized.body.token as string;
  expect(token).not.toBe(pan);
  const revealed = await postJson(first.baseUrl, `/v1/tokens/${token}/detokenize`, credentials.api_keys.payments!, { purpose: 'authorization' });
  expect(revealed.status).toBe(200);
  expect(revealed.body).toEqual({ token, card });

  // A burst at once: the card store coalesces concurrent inserts and lookups into single statements on PGlite too.
  const burst = Array.from({ length: 24 }, () => ({ number: newPan(), exp_month: 11, exp_year: 2032 }));
  const burstTokens = await Promise.all(
    burst.map(async (c) => {
      const res = await postJson(first.baseUrl, '/v1/tokens', credentials.api_keys.merchant!, { card: c });
      expect(res.status).toBe(201);
      return res.body.token as string;
    }),
  );
  expect(new Set(burstTokens).size).toBe(burst.length);
  const burstRevealed = await Promise.all(
    burstTokens.map((t) => postJson(first.baseUrl, `/v1/tokens/${t}/detokenize`, credentials.api_keys.payments!, { purpose: 'authorization' })),
  );
  burstRevealed.forEach((res, i) => expect(res.body).toEqual({ token: burstTokens[i], card: burst[i] }));

  const credentialsMtime = fs.statSync(credentialsFile).mtimeMs;
  const kmsKey = fs.readFileSync(kmsKeyFile);
  expect(await stopVault()).toBe(0);

  // Second start on the same directory: same database, same KMS key, credentials left alone.
  const second = await startVault();
  expect(fs.readFileSync(credentialsFile, 'utf8')).toBe(credentialsText);
  expect(fs.statSync(credentialsFile).mtimeMs).toBe(credentialsMtime);
  expect(fs.readFileSync(kmsKeyFile).equals(kmsKey)).toBe(true);
  expect(second.output()).not.toContain('development credentials written');

  const again = await postJson(second.baseUrl, `/v1/tokens/${token}/detokenize`, credentials.api_keys.payments!, { purpose: 'authorization' });
  expect(again.status).toBe(200);
  expect(again.body).toEqual({ token, card });
  // The same PAN still deduplicates onto the stored token, so the tenant's fingerprint key survived too.
  const retokenized = await postJson(second.baseUrl, '/v1/tokens', credentials.api_keys.merchant!, { card });
  expect(retokenized.status).toBe(200);
  expect(retokenized.body.token).toBe(token);

  expect(await stopVault()).toBe(0);
  const allOutput = first.output() + second.output();
  expect(allOutput).not.toContain(pan);
  for (const c of burst) expect(allOutput).not.toContain(c.number);
});
