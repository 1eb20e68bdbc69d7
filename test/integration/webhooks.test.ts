// Merchant webhooks end to end: endpoints over HTTP, the transactional outbox, signed delivery to a real receiver on
// 127.0.0.1, retries, dead letters, re-drive, racing deliverers, and no PAN anywhere along the way.
import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { SYSTEM_CONTEXT } from '../../src/domain/ports';
import { closeNow } from '../../src/http/server';
import { PgWebhookStore, enqueueWebhookEvent } from '../../src/store/webhook-store';
import { WebhookDeliverer } from '../../src/updater/webhooks/deliverer';
import { WEBHOOK_EVENT_TYPES, webhookBody, type WebhookEvent, type WebhookEventType } from '../../src/updater/webhooks/events';
import { verifySignature } from '../../src/updater/webhooks/signature';
import { WebhookEndpoints } from '../../src/updater/webhooks/webhook-endpoints';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

jest.setTimeout(60_000);

interface Hit {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A merchant's endpoint: records every request, answers `status` after `delayMs`; can go down and come back on its port. */
class Receiver {
  hits: Hit[] = [];
  status = 200;
  delayMs = 0;
  private server: http.Server | undefined;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks/cardvault`;
  }

  async up(): Promise<this> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.hits.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        // A body the vault must never keep: it is the merchant's, and could say anything.
        setTimeout(() => res.writeHead(this.status).end(`receiver error details ${this.status}`), this.delayMs);
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await closeNow(server);
  }
}

interface OutboxRow {
  id: string;
  event_id: string;
  state: string;
  attempts: number;
  next_attempt_at: Date;
  last_status: number | null;
  last_error: string | null;
  payload: unknown;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let fresh: FreshDatabase;
let h: Harness;
let store: PgWebhookStore;
const receivers: Receiver[] = [];
const pans: string[] = [];

/** Small delays so a whole retry schedule runs in milliseconds. */
function deliverer(maxAttempts = 4, allowInternalAddresses = true): WebhookDeliverer {
  const crypto = createCardCrypto(h.parts.keyring);
  // The receivers listen on 127.0.0.1, which production's deliverer refuses (see 'refuses to deliver…' below).
  return new WebhookDeliverer({ store, crypto, log: h.log, allowInternalAddresses, options: { baseDelayMs: 1, maxDelayMs: 20, maxAttempts, timeoutMs: 5_000 } });
}

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().up();
  receivers.push(r);
  return r;
}

async function merchant(): Promise<{ tenantId: string; key: string }> {
  const { tenant, keys } = await h.tenant(['merchant', 'payments']);
  return { tenantId: tenant.id, key: keys.merchant! };
}

async function createEndpoint(key: string, url: string, events?: string[]) {
  const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(key)).send(events ? { url, events } : { url });
  expect(res.status).toBe(201);
  return res.body as { id: string; url: string; events: string[]; secret: string; created_at: string };
}

/** An event about a card really vaulted, built the way the updater builds one: from its masked metadata. */
async function cardEvent(tenantId: string, key: string, type: WebhookEventType = 'card.expiry_updated'): Promise<WebhookEvent> {
  const pan = newPan();
  pans.push(pan);
  const res = await request(h.app).post('/v1/tokens').set(bearer(key)).send(cardBody(pan));
  expect(res.status).toBe(201);
  const card = res.body as { token: string; status: string; card: { brand: string; bin: string; last4: string; exp_month: number; exp_year: number } };
  return {
    id: randomUUID(),
    type,
    tenantId,
    createdAt: new Date(),
    data: {
      token: card.token,
      card: { ...card.card, exp_year: 2034, status: card.status },
      new_expiry: { exp_month: card.card.exp_month, exp_year: 2034 },
      reason: { outcome: 'new_expiry', network: 'visa', network_code: 'E' },
      source: 'batch',
      version: 2,
    },
  };
}

const enqueue = (event: WebhookEvent) => h.db.transaction((tx) => enqueueWebhookEvent(tx, event));

async function outbox(endpointId: string, eventId: string): Promise<OutboxRow> {
  const rows = await h.db.query<OutboxRow>(
    `SELECT id::text AS id, event_id, state, attempts, next_attempt_at, last_status, last_error, payload
     FROM webhook_outbox WHERE endpoint_id = $1 AND event_id = $2`,
    [endpointId, eventId],
  );
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

async function auditEvents(tenantId: string, action: string): Promise<Array<Record<string, unknown>>> {
  await h.parts.audit.flush();
  const rows = await h.db.query<{ event: string }>('SELECT event FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenantId]);
  return rows.map((r) => JSON.parse(r.event) as Record<string, unknown>).filter((e) => e.action === action);
}

beforeAll(async () => {
  // A database of its own: a deliverer claims every due row, and must see only this file's.
  fresh = await freshDatabase('cardvault_webhooks');
  h = await buildHarness({ db: fresh.db });
  store = new PgWebhookStore(h.db);
});
afterAll(async () => {
  for (const r of receivers) await r.down();
  await h.close();
  await fresh.drop();
});

describe('webhook endpoints over HTTP', () => {
  it('creates an endpoint: 201 with a whsec_ secret shown once, every event by default, the secret sealed at rest and never listed', async () => {
    const { tenantId, key } = await merchant();
    const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(key)).send({ url: 'https://hooks.shop.example/cardvault?x=1' });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body).sort()).toEqual(['created_at', 'events', 'id', 'secret', 'url']);
    expect(res.body).toMatchObject({ url: 'https://hooks.shop.example/cardvault?x=1', events: [...WEBHOOK_EVENT_TYPES] });
    const secret = res.body.secret as string;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);

    const list = await request(h.app).get('/v1/webhook-endpoints').set(bearer(key));
    expect(list.status).toBe(200);
    expect(list.body.data).toEqual([{ id: res.body.id, url: res.body.url, events: res.body.events, created_at: res.body.created_at, disabled_at: null }]);
    const [row] = await h.db.query<Record<string, unknown>>('SELECT * FROM webhook_endpoints WHERE id = $1', [res.body.id]);
    const [event] = await auditEvents(tenantId, 'webhook.endpoint.create');
    expect(event).toMatchObject({ outcome: 'success', details: { endpoint_id: res.body.id, origin: 'https://hooks.shop.example' } });
    for (const text of [list.text, JSON.stringify(row), JSON.stringify(event), ...h.captured.lines]) expect(text).not.toContain(secret.slice(6));
  });

  it('takes a subset of the event types', async () => {
    const { key } = await merchant();
    expect((await createEndpoint(key, 'https://a.example/h', ['card.closed', 'card.updated'])).events).toEqual(['card.closed', 'card.updated']);
  });

  it.each([
    ['a non-http scheme', { url: 'ftp://hooks.example/x' }, 'invalid_field', '/url'],
    ['a relative URL', { url: '/hooks' }, 'invalid_field', '/url'],
    ['credentials in the URL', { url: 'https://user:pw@hooks.example/x' }, 'invalid_field', '/url'],
    ['a URL over 2048 characters', { url: `https://hooks.example/${'a'.repeat(2030)}` }, 'invalid_field', '/url'],
    ['a URL that is not a string', { url: 42 }, 'invalid_type', '/url'],
    ['no URL', { events: ['card.closed'] }, 'missing_field', '/url'],
    ['an unknown event', { url: 'https://hooks.example/x', events: ['card.closed', 'card.exploded'] }, 'invalid_field', '/events/1'],
    ['an event listed twice', { url: 'https://hooks.example/x', events: ['card.closed', 'card.closed'] }, 'invalid_field', '/events/1'],
    ['no events', { url: 'https://hooks.example/x', events: [] }, 'invalid_field', '/events'],
    ['an unknown field', { url: 'https://hooks.example/x', secret: 'mine' }, 'unknown_field', '/'],
  ])('refuses %s with 400 %s and writes no endpoint', async (_name, body, code, pointer) => {
    const { tenantId, key } = await merchant();
    const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(key)).send(body);
    expect({ status: res.status, code: res.body.code, pointer: res.body.pointer }).toEqual({ status: 400, code, pointer });
    const rows = await h.db.query('SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1', [tenantId]);
    expect(rows).toHaveLength(0);
  });

  it('refuses a URL holding a card number without echoing it anywhere', async () => {
    const { tenantId, key } = await merchant();
    const pan = newPan();
    pans.push(pan);
    const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(key)).send({ url: `https://hooks.example/x?card=${pan}` });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'invalid_field' });
    expect(res.text).not.toContain(pan);
    expect(JSON.stringify(await auditEvents(tenantId, 'webhook.endpoint.create'))).not.toContain(pan);
  });

  it('accepts plain http only when allowInsecureUrls is on', async () => {
    const { key } = await merchant();
    const principal = await h.parts.principals.authenticate(key);
    const strict = new WebhookEndpoints({ store, crypto: createCardCrypto(h.parts.keyring), audit: h.parts.audit, options: { allowInsecureUrls: false } });
    await expect(strict.createEndpoint(principal, SYSTEM_CONTEXT, { url: 'http://127.0.0.1:9/x' })).rejects.toMatchObject({ code: 'invalid_field', pointer: '/url' });
    expect((await createEndpoint(key, 'http://127.0.0.1:9/x')).url).toBe('http://127.0.0.1:9/x');
  });

  it('refuses loopback, private and link-local hosts when https is required, and takes a public name', async () => {
    const { key } = await merchant();
    const principal = await h.parts.principals.authenticate(key);
    const strict = new WebhookEndpoints({ store, crypto: createCardCrypto(h.parts.keyring), audit: h.parts.audit, options: { allowInsecureUrls: false } });
    const internal = ['https://127.0.0.1/x', 'https://localhost/x', 'https://api.localhost/x', 'https://10.1.2.3/x', 'https://172.20.0.1/x',
      'https://192.168.1.1/x', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/x', 'https://[fd00::1]/x', 'https://[::ffff:10.0.0.1]/x',
      'https://[2001:0:a00:1::1]/x'];
    for (const url of internal) {
      await expect(strict.createEndpoint(principal, SYSTEM_CONTEXT, { url })).rejects.toMatchObject({ code: 'invalid_field', pointer: '/url' });
    }
    const created = await strict.createEndpoint(principal, SYSTEM_CONTEXT, { url: 'https://hooks.shop.example/cardvault' });
    expect(created.endpoint.url).toBe('https://hooks.shop.example/cardvault');
  });

  it('refuses a key whose role does not grant webhooks with 403', async () => {
    const { tenant, keys } = await h.tenant(['payments']);
    const res = await request(h.app).post('/v1/webhook-endpoints').set(bearer(keys.payments!)).send({ url: 'https://hooks.example/x' });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'forbidden' });
    expect((await request(h.app).get('/v1/webhook-endpoints').set(bearer(keys.payments!))).status).toBe(403);
    expect(await h.db.query('SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1', [tenant.id])).toHaveLength(0);
  });

  it("disables an endpoint with 204; it is listed as disabled and gets no new events; another tenant's id answers 404 like a missing one", async () => {
    const a = await merchant();
    const b = await merchant();
    const endpoint = await createEndpoint(a.key, 'https://a.example/h');
    const notFound = (res: request.Response) => ({ status: res.status, code: res.body.code, title: res.body.title });
    const foreign = await request(h.app).delete(`/v1/webhook-endpoints/${endpoint.id}`).set(bearer(b.key));
    const missing = await request(h.app).delete(`/v1/webhook-endpoints/${randomUUID()}`).set(bearer(a.key));
    const malformed = await request(h.app).delete('/v1/webhook-endpoints/not-a-uuid').set(bearer(a.key));
    expect(notFound(foreign)).toEqual({ status: 404, code: 'not_found', title: 'No such resource' });
    expect(notFound(missing)).toEqual(notFound(foreign));
    expect(notFound(malformed)).toEqual(notFound(foreign));
    expect((await request(h.app).get('/v1/webhook-endpoints').set(bearer(b.key))).body.data).toEqual([]);
    expect(await enqueue(await cardEvent(a.tenantId, a.key))).toBe(1);

    expect((await request(h.app).delete(`/v1/webhook-endpoints/${endpoint.id}`).set(bearer(a.key))).status).toBe(204);
    expect((await request(h.app).delete(`/v1/webhook-endpoints/${endpoint.id}`).set(bearer(a.key))).status).toBe(204);
    const [listed] = (await request(h.app).get('/v1/webhook-endpoints').set(bearer(a.key))).body.data;
    expect(listed).toMatchObject({ id: endpoint.id, disabled_at: expect.any(String) });
    expect(await enqueue(await cardEvent(a.tenantId, a.key))).toBe(0);
    // What was still pending for it is dead-lettered, not left waiting forever.
    const dead = await request(h.app).get('/v1/webhook-deliveries?state=dead').set(bearer(a.key));
    expect(dead.body.data).toEqual([expect.objectContaining({ endpoint_id: endpoint.id, last_error: 'endpoint_disabled', attempts: 0 })]);
    const disables = await auditEvents(a.tenantId, 'webhook.endpoint.disable');
    expect(disables.map((e) => [e.outcome, e.details])).toEqual([
      ['failure', { code: 'not_found' }],
      ['failure', { code: 'not_found' }],
      ['success', { endpoint_id: endpoint.id }],
      ['success', { endpoint_id: endpoint.id }],
    ]);
  });
});

describe('the outbox', () => {
  it('writes one row per enabled endpoint subscribed to the type, in the caller’s transaction, once per event', async () => {
    const a = await merchant();
    const b = await merchant();
    const all = await createEndpoint(a.key, 'https://a.example/all');
    const closedOnly = await createEndpoint(a.key, 'https://a.example/closed', ['card.closed']);
    await createEndpoint(b.key, 'https://b.example/all');
    const expiry = await cardEvent(a.tenantId, a.key);
    expect(await enqueue(expiry)).toBe(1);
    expect(await enqueue(expiry)).toBe(0);
    expect(await enqueue(await cardEvent(a.tenantId, a.key, 'card.closed'))).toBe(2);
    expect((await outbox(all.id, expiry.id)).payload).toEqual(JSON.parse(webhookBody(expiry)));

    const rolledBack = await cardEvent(a.tenantId, a.key);
    await expect(
      h.db.transaction(async (tx) => {
        expect(await enqueueWebhookEvent(tx, rolledBack)).toBe(1);
        throw new Error('the card change failed');
      }),
    ).rejects.toThrow('the card change failed');
    expect(await h.db.query('SELECT 1 FROM webhook_outbox WHERE event_id = $1', [rolledBack.id])).toHaveLength(0);
    expect(await h.db.query('SELECT 1 FROM webhook_outbox WHERE endpoint_id = $1', [closedOnly.id])).toHaveLength(1);
    // Left for no deliverer: these endpoints are on example hosts. Disabling them dead-letters what waits.
    for (const id of [all.id, closedOnly.id]) await request(h.app).delete(`/v1/webhook-endpoints/${id}`).set(bearer(a.key));
    await h.db.query("UPDATE webhook_outbox SET state = 'dead' WHERE tenant_id = $1", [b.tenantId]);
  });
});

describe('delivery', () => {
  it('POSTs the event signed with the secret from creation; the receiver verifies it', async () => {
    const r = await receiver();
    const { tenantId, key } = await merchant();
    const endpoint = await createEndpoint(key, r.url);
    const event = await cardEvent(tenantId, key);
    await enqueue(event);

    expect(await deliverer().deliverDue()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    expect(r.hits).toHaveLength(1);
    const [hit] = r.hits;
    expect(hit!.headers).toMatchObject({ 'content-type': 'application/json', 'cardvault-event-id': event.id, 'cardvault-event-type': event.type });
    const signature = hit!.headers['cardvault-signature'] as string;
    expect(verifySignature(signature, hit!.body, endpoint.secret, Math.floor(Date.now() / 1000))).toBe(true);
    expect(verifySignature(signature, hit!.body, 'whsec_someone-else', Math.floor(Date.now() / 1000))).toBe(false);
    expect(JSON.parse(hit!.body)).toEqual(JSON.parse(webhookBody(event)));
    expect(await outbox(endpoint.id, event.id)).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200, last_error: null });
    expect(await deliverer().deliverDue()).toEqual({ delivered: 0, retried: 0, dead: 0 });
  });

  it('refuses to deliver to a name or address that is loopback when internal addresses are not allowed, sending nothing', async () => {
    const r = await receiver();
    const { tenantId, key } = await merchant();
    // Registered while http and internal hosts are allowed (the harness), as a name that resolves to loopback
    // would be registered in production, and as an address; both refused at the connection.
    const byName = await createEndpoint(key, `http://localhost:${r.port}/hooks/cardvault`);
    const byAddress = await createEndpoint(key, r.url);
    const event = await cardEvent(tenantId, key);
    await enqueue(event);

    expect(await deliverer(4, false).deliverDue()).toEqual({ delivered: 0, retried: 2, dead: 0 });
    expect(r.hits).toHaveLength(0);
    for (const endpoint of [byName, byAddress]) {
      expect(await outbox(endpoint.id, event.id)).toMatchObject({ state: 'pending', attempts: 1, last_status: null, last_error: 'internal_address' });
    }
    // The deliverers of the tests below claim every due row of this database: these two are not theirs.
    await h.db.query('DELETE FROM webhook_outbox WHERE endpoint_id = ANY($1::uuid[])', [[byName.id, byAddress.id]]);
  });

  it('retries a 500 and then a closed port with growing next_attempt_at, dead-letters after maxAttempts, and a re-drive delivers the same event', async () => {
    const r = await receiver();
    r.status = 500;
    const { tenantId, key } = await merchant();
    const endpoint = await createEndpoint(key, r.url);
    const event = await cardEvent(tenantId, key);
    await enqueue(event);
    const d = deliverer(4);

    expect(await d.deliverDue()).toEqual({ delivered: 0, retried: 1, dead: 0 });
    const first = await outbox(endpoint.id, event.id);
    // The code only: the receiver's body never reaches the database.
    expect(first).toMatchObject({ state: 'pending', attempts: 1, last_status: 500, last_error: 'http_500' });
    await r.down();

    const history = [first];
    let row = first;
    for (let round = 0; row.state === 'pending' && round < 2_000; round += 1) {
      await sleep(2);
      await d.deliverDue();
      row = await outbox(endpoint.id, event.id);
      if (row.attempts !== history.at(-1)!.attempts) history.push(row);
    }
    expect(history.map((x) => [x.state, x.attempts])).toEqual([['pending', 1], ['pending', 2], ['pending', 3], ['dead', 4]]);
    for (let i = 1; i < 3; i += 1) expect(history[i]!.next_attempt_at.getTime()).toBeGreaterThan(history[i - 1]!.next_attempt_at.getTime());
    expect(row).toMatchObject({ last_status: null, last_error: 'connection_refused' });
    const dead = await request(h.app).get('/v1/webhook-deliveries?state=dead').set(bearer(key));
    expect(dead.body.data).toEqual([expect.objectContaining({ id: row.id, event_id: event.id, state: 'dead', attempts: 4, last_error: 'connection_refused' })]);

    await r.up();
    r.status = 204;
    const redriven = await request(h.app).post(`/v1/webhook-deliveries/${row.id}/redrive`).set(bearer(key)).send({});
    expect(redriven.status).toBe(200);
    expect(redriven.body).toMatchObject({ id: row.id, event_id: event.id, state: 'pending', attempts: 0, last_error: null });
    expect(await d.deliverDue()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    expect(r.hits.map((hit) => hit.headers['cardvault-event-id'])).toEqual([event.id, event.id]);
    expect(JSON.parse(r.hits[1]!.body).id).toBe(event.id);
    expect(await outbox(endpoint.id, event.id)).toMatchObject({ state: 'delivered', attempts: 1, last_status: 204 });
    expect(await auditEvents(tenantId, 'webhook.redrive')).toEqual([
      expect.objectContaining({ outcome: 'success', details: { delivery_id: row.id, event_id: event.id, endpoint_id: endpoint.id } }),
    ]);
  });

  it("re-drives all of a tenant's dead deliveries and none of another's; refuses a delivery that is not dead, 404 for another tenant's", async () => {
    const r = await receiver();
    await r.down();
    const a = await merchant();
    const b = await merchant();
    const endpointA = await createEndpoint(a.key, r.url);
    await createEndpoint(b.key, r.url);
    for (const who of [a, a, b]) await enqueue(await cardEvent(who.tenantId, who.key));
    expect(await deliverer(1).deliverDue()).toEqual({ delivered: 0, retried: 0, dead: 3 });

    const [deadOfB] = (await request(h.app).get('/v1/webhook-deliveries?state=dead').set(bearer(b.key))).body.data;
    const foreign = await request(h.app).post(`/v1/webhook-deliveries/${deadOfB.id}/redrive`).set(bearer(a.key)).send({});
    const malformed = await request(h.app).post('/v1/webhook-deliveries/12ab/redrive').set(bearer(a.key)).send({});
    expect([foreign.status, foreign.body.code, malformed.status, malformed.body.code]).toEqual([404, 'not_found', 404, 'not_found']);

    const all = await request(h.app).post('/v1/webhook-deliveries/redrive').set(bearer(a.key)).send({});
    expect({ status: all.status, body: all.body }).toEqual({ status: 200, body: { redriven: 2 } });
    expect((await request(h.app).get('/v1/webhook-deliveries?state=dead').set(bearer(b.key))).body.data).toHaveLength(1);
    const pending = (await request(h.app).get('/v1/webhook-deliveries?state=pending').set(bearer(a.key))).body.data;
    expect(pending.map((p: { endpoint_id: string; attempts: number }) => [p.endpoint_id, p.attempts])).toEqual([[endpointA.id, 0], [endpointA.id, 0]]);
    const notDead = await request(h.app).post(`/v1/webhook-deliveries/${pending[0].id}/redrive`).set(bearer(a.key)).send({});
    expect({ status: notDead.status, code: notDead.body.code }).toEqual({ status: 400, code: 'invalid_request' });
    const badState = await request(h.app).get('/v1/webhook-deliveries?state=lost').set(bearer(a.key));
    expect({ status: badState.status, code: badState.body.code, pointer: badState.body.pointer }).toEqual({ status: 400, code: 'invalid_field', pointer: '/state' });

    await r.up();
    expect(await deliverer().deliverDue()).toEqual({ delivered: 2, retried: 0, dead: 0 });
  });

  it('sends each row once when two deliverers race over the same due rows', async () => {
    const r = await receiver();
    r.delayMs = 5;
    const { tenantId, key } = await merchant();
    await createEndpoint(key, r.url);
    const events = await Promise.all(Array.from({ length: 20 }, () => cardEvent(tenantId, key)));
    for (const event of events) await enqueue(event);
    const [one, two] = [deliverer(), deliverer()];

    let delivered = 0;
    for (let round = 0; round < 20; round += 1) {
      const counts = await Promise.all([one.deliverDue(7), two.deliverDue(7), one.deliverDue(7), two.deliverDue(7)]);
      const sent = counts.reduce((sum, c) => sum + c.delivered + c.retried + c.dead, 0);
      delivered += counts.reduce((sum, c) => sum + c.delivered, 0);
      if (sent === 0) break;
    }
    expect(delivered).toBe(20);
    const ids = r.hits.map((hit) => hit.headers['cardvault-event-id']);
    expect(ids).toHaveLength(20);
    expect(new Set(ids)).toEqual(new Set(events.map((e) => e.id)));
  });
});

describe('the delivery loop', () => {
  it('delivers in the background once started, and stop() waits for the round in flight', async () => {
    const r = await receiver();
    const { tenantId, key } = await merchant();
    await createEndpoint(key, r.url);
    const d = deliverer();
    d.start(5);
    try {
      await enqueue(await cardEvent(tenantId, key));
      for (let i = 0; i < 1_000 && r.hits.length === 0; i += 1) await sleep(5);
    } finally {
      await d.stop();
    }
    expect(r.hits).toHaveLength(1);
  });

  it('logs ids, attempts, statuses and codes, never the URL, the secret or the body', () => {
    const lines = h.captured.entries().filter((e) => String(e.msg).startsWith('webhook'));
    expect(new Set(lines.map((e) => e.msg))).toEqual(new Set(['webhook delivered', 'webhook attempt failed', 'webhook dead-lettered']));
    for (const line of lines) {
      const { level: _l, time: _t, service: _s, msg: _m, pid: _p, hostname: _h, ...fields } = line;
      const allowed = ['delivery_id', 'event_id', 'endpoint_id', 'tenant_id', 'attempt', 'status', 'failure', 'retry_in_ms', 'trace_id', 'span_id'];
      expect(Object.keys(fields).filter((k) => !allowed.includes(k))).toEqual([]);
      expect(JSON.stringify(line)).not.toMatch(/127\.0\.0\.1|whsec_|receiver error details/);
    }
    // Why an attempt failed, as its code: under `error` the logger's error serializer left only {"type":"string"}.
    for (const line of lines.filter((e) => e.msg !== 'webhook delivered')) expect(line.failure).toMatch(/^[a-z0-9_]+$/);
    expect(lines.map((e) => e.failure)).toContain('http_500');
  });
});

describe('card data', () => {
  it('puts no PAN in any received body, outbox row, delivery listing or log line', async () => {
    expect(pans.length).toBeGreaterThan(20);
    const rows = await h.db.query<{ payload: string; last_error: string | null }>('SELECT payload::text AS payload, last_error FROM webhook_outbox');
    const endpoints = await h.db.query<{ url: string }>('SELECT url FROM webhook_endpoints');
    const hits = receivers.flatMap((r) => r.hits.map((hit) => hit.body));
    expect(hits.length).toBeGreaterThan(20);
    const texts = [...hits, ...rows.map((row) => JSON.stringify(row)), ...endpoints.map((e) => e.url), ...h.captured.lines];
    for (const pan of pans) {
      const found = texts.filter((text) => text.includes(pan));
      expect({ pan: `…${pan.slice(-4)}`, found }).toEqual({ pan: `…${pan.slice(-4)}`, found: [] });
    }
  });
});
