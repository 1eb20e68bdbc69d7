// The policy.load event: each start records the roles it loaded and a digest of each role's grants.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { openRuntime } from '../../src/dependencies';
import { createLogger } from '../../src/log';
import { REPO_ROOT } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';

let fresh: FreshDatabase;
let dir: string;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_policy_load');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-policy-load-'));
});
afterAll(async () => {
  await fresh.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A copy of the shipped policies/ with some files replaced. */
function policies(name: string, replaced: Record<string, string> = {}): string {
  const target = path.join(dir, name);
  fs.cpSync(path.join(REPO_ROOT, 'policies'), target, { recursive: true });
  for (const [file, text] of Object.entries(replaced)) fs.writeFileSync(path.join(target, file), text);
  return target;
}

/** Starts the vault's runtime on the policies, stops it, and returns the details of the policy.load it recorded. */
async function startWith(policiesDir: string): Promise<{ roles: string[]; grants: Record<string, string> }> {
  const config = loadConfig({ DATABASE_URL: fresh.url, RATE_LIMITS: 'off', METRICS_PORT: 'off', POLICIES_DIR: policiesDir }, dir);
  const runtime = await openRuntime(config, createLogger({ level: 'silent' }));
  await runtime.close();
  const [row] = await fresh.db.query<{ event: string }>("SELECT event FROM audit_events WHERE event::jsonb ->> 'action' = 'policy.load' ORDER BY seq DESC LIMIT 1");
  return (JSON.parse(row!.event) as { details: { roles: string[]; grants: Record<string, string> } }).details;
}

const MERCHANT_WITH_DETOKENIZE = `role: merchant
description: Also detokenize, for a test.
actions: [tokenize, read, update, delete, updater, webhooks, detokenize]
detokenize:
  purposes: [refund]
  reveal: [number]
`;

it('records the same grant digests for the same roles, and a different one for the role whose grants changed', async () => {
  const first = await startWith(policies('shipped'));
  expect(first.roles).toEqual(['admin', 'auditor', 'merchant', 'payments']);
  expect(Object.keys(first.grants).sort()).toEqual(first.roles);
  for (const digest of Object.values(first.grants)) expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

  const again = await startWith(policies('shipped-again'));
  expect(again).toEqual(first);

  const widened = await startWith(policies('widened', { 'merchant.yaml': MERCHANT_WITH_DETOKENIZE }));
  expect(widened.roles).toEqual(first.roles);
  expect(widened.grants.merchant).not.toBe(first.grants.merchant);
  expect({ ...widened.grants, merchant: undefined }).toEqual({ ...first.grants, merchant: undefined });
});
