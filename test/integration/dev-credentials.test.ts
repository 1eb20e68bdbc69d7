// The development credentials of a first start: written once; rewritten, with fresh keys, when a first start
// stopped after creating the demo tenant but before writing the file; never for a database an operator set up.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createDevCredentials, DEMO_TENANT } from '../../src/bootstrap';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, principalsWithAuditDown, type Harness } from '../support/harness';
import { bearer } from '../support/http';
import { loadPolicies } from '../../src/policy/load-policies';
import { REPO_ROOT } from '../support/env';

let fresh: FreshDatabase;
let h: Harness;
let dir: string;

beforeEach(async () => {
  fresh = await freshDatabase('cardvault_devcreds');
  h = await buildHarness({ db: fresh.db });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-devcreds-'));
});
afterEach(async () => {
  await h.close();
  await fresh.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const policies = loadPolicies(path.join(REPO_ROOT, 'policies'));
const create = () => createDevCredentials({ dataDir: dir, db: h.db, principals: h.parts.principals, tenants: h.parts.tenants, policies, log: h.log });
const written = () => JSON.parse(fs.readFileSync(path.join(dir, 'credentials.json'), 'utf8')) as { tenant: string; api_keys: Record<string, string> };
const status = async (key: string) => (await request(h.app).get('/v1/tokens/4111110000001111').set(bearer(key))).status;

it('writes keys that work, once: a restart leaves the file and the keys as they are', async () => {
  expect(await create()).toBe(path.join(dir, 'credentials.json'));
  const first = written();
  expect(await status(first.api_keys.merchant!)).toBe(404);
  expect(await create()).toBeUndefined();
  expect(written()).toEqual(first);
});

it('finishes a first start that stopped before writing the file: new keys that work, the unknown ones revoked', async () => {
  // As a first start leaves it when interrupted between creating the tenant and writing the file.
  const tenant = await h.parts.principals.createTenant(DEMO_TENANT, 'system');
  const lost = await h.parts.principals.issueApiKey(tenant.id, 'merchant', 'system', 'development credentials');
  expect(fs.existsSync(path.join(dir, 'credentials.json'))).toBe(false);

  expect(await create()).toBe(path.join(dir, 'credentials.json'));
  const { tenant: name, api_keys: keys } = written();
  expect(name).toBe(DEMO_TENANT);
  expect(await status(keys.merchant!)).toBe(404);
  expect(await status(lost.secret.reveal())).toBe(401);
  expect(fs.statSync(path.join(dir, 'credentials.json')).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dir)).toEqual(['credentials.json']);
});

it('writes nothing for a database that holds an operator\'s tenant', async () => {
  await h.parts.principals.createTenant('acme', 'cli');
  expect(await create()).toBeUndefined();
  expect(fs.existsSync(path.join(dir, 'credentials.json'))).toBe(false);
});

it('of two first starts at once on one database, one writes the credentials and the other leaves them to it', async () => {
  const results = await Promise.all([create(), create()]);
  expect(results.sort()).toEqual([path.join(dir, 'credentials.json'), undefined]);
  const { api_keys: keys } = written();
  for (const key of Object.values(keys)) expect(await status(key)).not.toBe(401);
  const active = await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys WHERE revoked_at IS NULL');
  expect(active[0]!.n).toBe(Object.keys(keys).length);
  const events = await h.db.query<{ event: string }>('SELECT event FROM audit_events');
  expect(events.filter((r) => JSON.parse(r.event).action === 'tenant.create')).toHaveLength(1);
});

it('records the demo tenant\'s tenant.create when the first start died before committing it', async () => {
  const auditDown = principalsWithAuditDown(h);
  await expect(auditDown.createTenant(DEMO_TENANT, 'system')).rejects.toMatchObject({ code: 'audit_unavailable' });

  expect(await create()).toBe(path.join(dir, 'credentials.json'));
  const events = (await h.db.query<{ event: string }>('SELECT event FROM audit_events')).map((r) => JSON.parse(r.event));
  expect(events.filter((e) => e.action === 'tenant.create')).toEqual([
    expect.objectContaining({ principal: 'system', details: { name: DEMO_TENANT, completes_earlier_attempt: true } }),
  ]);
  expect(await status(written().api_keys.merchant!)).toBe(404);
});
