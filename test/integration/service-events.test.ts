import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { startVault } from '../../src/main';
import { createLogger } from '../../src/log';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { captureLog } from '../support/log-capture';

let fresh: FreshDatabase;
let dir: string;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_service');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-service-'));
});
afterAll(async () => {
  await fresh.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('records policy load, signing-key creation, development credentials, service start and stop', async () => {
  const config = loadConfig({ DATABASE_URL: fresh.url, PORT: '0', HOST: '127.0.0.1', RATE_LIMITS: 'off' }, dir);
  const vault = await startVault(config, createLogger({ level: 'info', destination: captureLog() }));
  await vault.stop();

  const rows = await fresh.db.query<{ event: string }>('SELECT event FROM audit_events ORDER BY seq');
  const events = rows.map((r) => JSON.parse(r.event) as { action: string; principal: string; details: Record<string, unknown> });
  const actions = events.map((e) => e.action);
  expect(actions[0]).toBe('key.signing.create');
  expect(actions).toEqual(expect.arrayContaining(['policy.load', 'tenant.create', 'api_key.create', 'service.start', 'service.stop']));
  expect(actions.indexOf('policy.load')).toBeLessThan(actions.indexOf('service.start'));
  expect(actions[actions.length - 1]).toBe('service.stop');
  expect(events.find((e) => e.action === 'policy.load')!.details.roles).toEqual(['admin', 'auditor', 'merchant', 'payments']);
  expect(events.filter((e) => e.action === 'api_key.create')).toHaveLength(4);
  expect(events.every((e) => ['system', 'anonymous'].includes(e.principal) || e.principal.length > 0)).toBe(true);

  // The final checkpoint at shutdown covers every event, including service.stop.
  const [checkpoint] = await fresh.db.query<{ tree_size: string }>('SELECT max(tree_size) AS tree_size FROM audit_checkpoints');
  expect(Number(checkpoint!.tree_size)).toBe(events.length);
});
