// A tenant committed by an attempt that died before its tenant.create event committed is not left out of the
// trail: creating it again, once it is a minute old, records the event. "Never committed" is read off the audit log.
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, principalsWithAuditDown, type Harness } from '../support/harness';

let fresh: FreshDatabase;
let h: Harness;

beforeEach(async () => {
  fresh = await freshDatabase('cardvault_tenant_audit');
  h = await buildHarness({ db: fresh.db });
});
afterEach(async () => {
  await h.close();
  await fresh.drop();
});

// The CLI's trail adds the operator to these events (cli.test.ts checks it); here the trail is the vault's.
const operator = 'cli';

const auditDown = () => principalsWithAuditDown(h);

const tenantEvents = async (name: string) => {
  const rows = await fresh.db.query<{ event: string }>('SELECT event FROM audit_events ORDER BY seq');
  return rows
    .map((r) => JSON.parse(r.event) as { action: string; tenant: string; details: Record<string, unknown> })
    .filter((e) => e.action === 'tenant.create' && e.details.name === name);
};
const audited = async (name: string) => (await tenantEvents(name)).length > 0;
const age = (name: string) => fresh.db.query("UPDATE tenants SET created_at = created_at - interval '61 seconds' WHERE name = $1", [name]);

it('records the tenant.create an earlier attempt never committed, once, when the tenant is created again a minute later', async () => {
  await expect(auditDown().createTenant('acme', operator)).rejects.toMatchObject({ code: 'audit_unavailable' });
  const [left] = await fresh.db.query<{ id: string }>("SELECT id FROM tenants WHERE name = 'acme'");
  expect(await tenantEvents('acme')).toEqual([]);
  expect(await audited('acme')).toBe(false);

  // Within the minute the attempt may still be recording its event: the name is simply taken.
  const early = await h.parts.principals.createTenant('acme', operator).catch((err: unknown) => err);
  expect(early).toMatchObject({ code: 'tenant_exists', detail: expect.stringContaining('after a minute') });
  expect(await tenantEvents('acme')).toEqual([]);

  await age('acme');
  const completed = await h.parts.principals.createTenant('acme', operator);
  expect(completed.id).toBe(left!.id);
  expect(await tenantEvents('acme')).toEqual([
    expect.objectContaining({ tenant: left!.id, details: { name: 'acme', completes_earlier_attempt: true } }),
  ]);
  expect(await audited('acme')).toBe(true);

  await expect(h.parts.principals.createTenant('acme', operator)).rejects.toMatchObject({ code: 'tenant_exists' });
  expect(await tenantEvents('acme')).toHaveLength(1);
  const [{ n }] = (await fresh.db.query<{ n: number }>("SELECT count(*)::int AS n FROM tenants WHERE name = 'acme'")) as [{ n: number }];
  expect(n).toBe(1);
});

it('answers tenant_exists for a tenant that was audited, however old, and records nothing more', async () => {
  const first = await h.parts.principals.createTenant('globex', operator);
  expect(await audited('globex')).toBe(true);
  await age('globex');
  await expect(h.parts.principals.createTenant('globex', operator)).rejects.toMatchObject({ code: 'tenant_exists' });
  expect(await tenantEvents('globex')).toEqual([expect.objectContaining({ tenant: first.id, details: { name: 'globex' } })]);
});
