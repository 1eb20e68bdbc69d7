// PANs of 12–14 digits: what is stored, returned and audited in clear leaves at least 5 digits hidden (PCI DSS 3.4.1).
import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

/** The details of the tenant's card.tokenize event for `token`. */
async function tokenizeDetails(tenantId: string, token: string): Promise<Record<string, unknown>> {
  await h.parts.audit.flush();
  const rows = await h.db.query<{ event: string }>('SELECT event FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenantId]);
  const events = rows.map((r) => JSON.parse(r.event) as { action: string; token: string | null; details: Record<string, unknown> });
  return events.find((e) => e.action === 'card.tokenize' && e.token === token)!.details;
}

it('stores, returns and audits only the first 3 digits of a 12-digit PAN, and detokenizes it whole', async () => {
  const { tenant, keys } = await h.tenant(['merchant', 'payments']);
  const pan = newPan('501800', 12);
  const leading = pan.slice(0, 3);

  const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
  expect(created.status).toBe(201);
  const token = created.body.token as string;
  expect(created.body.card).toMatchObject({ brand: 'maestro', bin: leading, last4: pan.slice(-4) });
  expect(token.slice(0, 3)).toBe(leading);

  const [row] = await h.db.query<{ bin: string }>('SELECT bin FROM cards WHERE tenant_id = $1 AND token = $2', [tenant.id, token]);
  expect(row!.bin).toBe(leading);

  const details = await tokenizeDetails(tenant.id, token);
  expect(details).toMatchObject({ format: 'bin6_last4', bin: leading, last4: pan.slice(-4) });
  expect(JSON.stringify(details)).not.toContain(pan.slice(0, 6));

  const revealed = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
  expect(revealed.status).toBe(200);
  expect(revealed.body.card.number).toBe(pan);
});
