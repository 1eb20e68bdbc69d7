import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { PROOF_READ_CHUNK } from '../../src/audit/audit-service';
import { verifyCommand } from '../../src/audit/verify-command';
import { leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle';
import { verifyCheckpointJws } from '../../src/crypto/checkpoint-signer';
import { AUDIT_ACTIONS } from '../../src/domain/ports';
import { openPostgres } from '../../src/store/db';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';
import { databaseWithRuntimeRole, type RuntimeRoleDatabase } from '../support/runtime-role';

jest.setTimeout(60_000);

const EVENT_FIELDS = ['action', 'details', 'outcome', 'prev', 'principal', 'request_id', 'seq', 'source', 'tenant', 'time', 'token', 'v'];

async function events(h: Harness, where = 'TRUE', params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  await h.parts.audit.flush();
  const rows = await h.db.query<{ event: string }>(`SELECT event FROM audit_events WHERE ${where} ORDER BY seq`, params);
  return rows.map((r) => JSON.parse(r.event) as Record<string, unknown>);
}

describe('what is recorded', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness();
  });
  afterAll(() => h.close());

  it('records every card operation, failure and denial with every field, and never a PAN', async () => {
    const { tenant, keys } = await h.tenant();
    const pan = newPan();
    const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).set('X-Request-Id', 'req-tokenize-1').send(cardBody(pan));
    const token = created.body.token as string;
    await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!));
    await request(h.app).patch(`/v1/tokens/${token}`).set(bearer(keys.merchant!)).send({ card: { exp_month: 2, exp_year: 2033 } });
    await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'refund' });
    await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.merchant!)).send({ purpose: 'refund' });
    await request(h.app).get('/v1/audit/checkpoint').set(bearer(keys.auditor!));
    await request(h.app).get('/v1/audit/events').set(bearer(keys.auditor!));
    await request(h.app).delete(`/v1/tokens/${token}`).set(bearer(keys.merchant!));
    await request(h.app).get(`/v1/tokens/${token}`).set(bearer(keys.merchant!));
    const [apiKey] = await h.parts.tenants.listApiKeys(tenant.id);
    await h.parts.principals.revokeApiKey(apiKey!.id, 'test');

    const recorded = await events(h, 'tenant_id = $1', [tenant.id]);
    const byAction = (action: string, outcome = 'success') => recorded.find((e) => e.action === action && e.outcome === outcome);
    for (const event of recorded) {
      expect(Object.keys(event).sort()).toEqual(EVENT_FIELDS);
      expect(event.tenant).toBe(tenant.id);
      expect(new Date(String(event.time)).toISOString()).toBe(event.time);
    }
    expect(byAction('tenant.create')).toMatchObject({ principal: 'test' });
    expect(byAction('api_key.create')).toMatchObject({ details: { role: 'merchant' } });
    expect(byAction('key.data_key.create')).toMatchObject({ principal: 'system', details: { purpose: 'card-data' } });
    expect(byAction('card.tokenize')).toMatchObject({ token, request_id: 'req-tokenize-1', details: { created: true, bin: pan.slice(0, 6), last4: pan.slice(-4) } });
    expect(byAction('card.tokenize')!.source).toMatch(/127\.0\.0\.1/);
    expect(byAction('card.read')).toMatchObject({ token });
    expect(byAction('card.update')).toMatchObject({ token, details: { fields: ['exp_month', 'exp_year'] } });
    expect(byAction('card.detokenize')).toMatchObject({ token, details: { purpose: 'refund', fields: ['number', 'exp_month', 'exp_year'] } });
    expect(byAction('auth.denied', 'denied')).toMatchObject({ token, details: { attempted: 'card.detokenize', code: 'forbidden' } });
    expect(byAction('audit.read')).toMatchObject({ details: { what: 'checkpoint' } });
    expect(byAction('audit.export')).toMatchObject({ details: { scope: 'tenant' } });
    expect(byAction('card.delete')).toMatchObject({ token });
    expect(byAction('card.read', 'failure')).toMatchObject({ token, details: { code: 'token_not_found' } });
    expect(byAction('api_key.revoke')).toMatchObject({ details: { api_key_id: apiKey!.id } });
    expect(JSON.stringify(recorded)).not.toContain(pan);
  });

  it('refuses and records a key whose role lacks the action before the request is read, on every kind of route', async () => {
    const { tenant, keys } = await h.tenant(['merchant', 'payments', 'auditor']);
    const token = (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()))).body.token as string;
    const runId = '00000000-0000-4000-8000-000000000000';
    // Bodies a role-holder would be refused for (400) or tokens it would not find (404): the role is checked first.
    const refused: Array<[string, string, string, object | undefined, string]> = [
      ['merchant', 'post', `/v1/tokens/${token}/detokenize`, {}, 'card.detokenize'],
      ['merchant', 'post', `/v1/tokens/${token}/detokenize`, { purpose: 'Authorization' }, 'card.detokenize'],
      ['auditor', 'post', `/v1/tokens/${token}/detokenize`, { purpose: 'authorization', x: 1 }, 'card.detokenize'],
      ['payments', 'get', '/v1/tokens/not-a-token', undefined, 'card.read'],
      ['payments', 'get', '/v1/webhook-endpoints', undefined, 'webhook.endpoints.read'],
      ['payments', 'get', '/v1/webhook-deliveries', undefined, 'webhook.deliveries.read'],
      ['payments', 'get', '/v1/account-updater/settings', undefined, 'updater.settings.read'],
      ['payments', 'get', '/v1/account-updater/runs', undefined, 'updater.runs.read'],
      ['payments', 'get', `/v1/account-updater/runs/${runId}`, undefined, 'updater.runs.read'],
      ['payments', 'put', `/v1/tokens/${token}/account-updater`, { enrolled: 'maybe' }, 'updater.enroll'],
      ['merchant', 'get', '/v1/audit/events?from=yesterday', undefined, 'audit.export'],
    ];
    for (const [role, method, url, body, attempted] of refused) {
      const call = (request(h.app) as unknown as Record<string, (u: string) => request.Test>)[method]!(url).set(bearer(keys[role]!)).set('X-Request-Id', `req-deny-${attempted}`);
      const res = body === undefined ? await call : await call.send(body);
      expect({ url, role, status: res.status, code: res.body.code }).toEqual({ url, role, status: 403, code: 'forbidden' });
    }
    const denied = (await events(h, 'tenant_id = $1', [tenant.id])).filter((e) => e.action === 'auth.denied');
    expect(denied.map((e) => (e.details as { attempted: string }).attempted)).toEqual(refused.map(([, , , , attempted]) => attempted));
    for (const event of denied) expect(event).toMatchObject({ outcome: 'denied', details: { code: 'forbidden' } });
    // The token when the path held one, never what it held otherwise.
    expect(denied[0]!.token).toBe(token);
    expect(denied[3]!.token).toBeNull();

    // The same reads by a key whose role grants them are audited too.
    for (const url of ['/v1/webhook-endpoints', '/v1/webhook-deliveries?state=dead', '/v1/account-updater/runs']) {
      expect((await request(h.app).get(url).set(bearer(keys.merchant!))).status).toBe(200);
    }
    expect((await request(h.app).get('/v1/account-updater/settings').set(bearer(keys.merchant!))).status).toBe(409);
    const reads = (await events(h, 'tenant_id = $1', [tenant.id])).filter((e) => String(e.action).endsWith('.read') && e.action !== 'card.read');
    expect(reads.map((e) => [e.action, e.outcome, e.details])).toEqual([
      ['webhook.endpoints.read', 'success', { count: 0 }],
      ['webhook.deliveries.read', 'success', { state: 'dead', count: 0 }],
      ['updater.runs.read', 'success', { count: 0 }],
      ['updater.settings.read', 'success', { configured: false }],
    ]);
  });

  it('refuses and records a key whose role lacks the action before it parses or decrypts the body, whatever the body', async () => {
    const { tenant, keys } = await h.tenant(['merchant', 'payments']);
    const token = (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()))).body.token as string;
    // A role-holder would get 400, 413, 415 or invalid_jwe for these; a key without the role learns nothing from them.
    const refused: Array<[string, string, string, string, string]> = [
      ['payments', '/v1/tokens', 'application/json', '{"card":', 'card.tokenize'],
      ['payments', '/v1/tokens', 'application/json', JSON.stringify({ card: { number: 'x'.repeat(20_000) } }), 'card.tokenize'],
      ['payments', '/v1/tokens', 'text/plain', 'a card', 'card.tokenize'],
      ['payments', '/v1/tokens', 'application/jose', 'a.b.c.d.e', 'card.tokenize'],
      ['merchant', `/v1/tokens/${token}/detokenize`, 'application/json', '{"purpose":', 'card.detokenize'],
    ];
    for (const [role, url, type, body] of refused) {
      const res = await request(h.app).post(url).set(bearer(keys[role]!)).set('Content-Type', type).send(body);
      expect({ url, type, status: res.status, code: res.body.code }).toEqual({ url, type, status: 403, code: 'forbidden' });
    }
    const denied = (await events(h, 'tenant_id = $1', [tenant.id])).filter((e) => e.action === 'auth.denied');
    expect(denied.map((e) => (e.details as { attempted: string }).attempted)).toEqual(refused.map(([, , , , attempted]) => attempted));
  });

  it('refuses and records a key whose role lacks the action whatever the path encoding, and records no token from it', async () => {
    const { tenant, keys } = await h.tenant(['merchant', 'payments', 'auditor']);
    const pan = newPan();
    // Each path holds a segment that is not percent-encoded UTF-8: Express alone would answer 400 before the role check.
    const refused: Array<[string, string, string, string]> = [
      ['merchant', 'POST', '/v1/tokens/%E0%A4%A/detokenize', 'card.detokenize'],
      ['payments', 'GET', '/v1/tokens/%ff%fe', 'card.read'],
      ['payments', 'DELETE', `/v1/tokens/${pan}%ZZ`, 'card.delete'],
      ['payments', 'PATCH', `/v1/tokens/tok_${pan}%`, 'card.update'],
      ['payments', 'POST', '/v1/tokens/%/refresh', 'card.refresh'],
      ['auditor', 'DELETE', '/v1/webhook-endpoints/%c0%ae', 'webhook.endpoint.disable'],
      ['auditor', 'GET', '/v1/account-updater/runs/%E0', 'updater.runs.read'],
    ];
    for (const [role, method, url] of refused) {
      const res = await request(h.app)[method.toLowerCase() as 'get'](url).set(bearer(keys[role]!)).send({});
      expect({ url, status: res.status, code: res.body.code }).toEqual({ url, status: 403, code: 'forbidden' });
    }
    const denied = (await events(h, 'tenant_id = $1', [tenant.id])).filter((e) => e.action === 'auth.denied');
    expect(denied.map((e) => [(e.details as { attempted: string }).attempted, e.token])).toEqual(refused.map(([, , , attempted]) => [attempted, null]));
    expect(JSON.stringify(denied)).not.toContain(pan.slice(6, 12));

    // A key whose role has the action hears that the path is malformed, before its body is read.
    const allowed: Array<[string, string, string]> = [
      ['merchant', 'GET', '/v1/tokens/%E0%A4%A'],
      ['payments', 'POST', '/v1/tokens/%ff/detokenize'],
      ['merchant', 'DELETE', `/v1/tokens/${pan}%ZZ`],
    ];
    for (const [role, method, url] of allowed) {
      const res = await request(h.app)[method.toLowerCase() as 'get'](url).set(bearer(keys[role]!)).set('Content-Type', 'application/json').send('{"purpose":');
      expect({ url, status: res.status, type: res.headers['content-type'], code: res.body.code }).toEqual({
        url,
        status: 400,
        type: 'application/problem+json; charset=utf-8',
        code: 'invalid_request',
      });
      expect(res.text).not.toContain(pan.slice(6, 12));
    }
  });

  it('records failed authentication with its source address and reason', async () => {
    const res = await request(h.app).get('/v1/tokens/4111110000001111').set('X-Request-Id', 'req-auth-fail-1').set(bearer(`cvk_${'Z'.repeat(43)}`));
    expect(res.status).toBe(401);
    const [event] = await events(h, "event LIKE '%req-auth-fail-1%'");
    expect(event).toMatchObject({ action: 'auth.failure', outcome: 'failure', tenant: null, principal: 'anonymous', details: { reason: 'unknown_key' } });
    expect(event!.source).toMatch(/127\.0\.0\.1/);
  });

  it("answers a revoked key exactly as an unknown one, and records its use against the key, in its tenant's export", async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const { tenant, keys } = await h.tenant(['merchant', 'auditor']);
    const [merchantKey] = (await h.parts.tenants.listApiKeys(tenant.id)).filter((k) => k.role === 'merchant');
    expect(await h.parts.principals.revokeApiKey(merchantKey!.id, 'test')).toBe(true);

    const path = `/v1/tokens/tok_${'b'.repeat(16)}`;
    const revoked = await request(h.app).get(path).set('X-Request-Id', 'req-revoked-key-1').set(bearer(keys.merchant!));
    const unknown = await request(h.app).get(path).set('X-Request-Id', 'req-revoked-key-2').set(bearer(`cvk_${'Y'.repeat(43)}`));
    const answer = (res: request.Response) => ({
      status: res.status,
      body: { ...res.body, request_id: undefined },
      contentType: res.headers['content-type'],
      authenticate: res.headers['www-authenticate'],
    });
    expect(answer(revoked)).toEqual(answer(unknown));
    expect(revoked.body).toMatchObject({ status: 401, code: 'unauthenticated' });

    const [used] = await events(h, "event LIKE '%req-revoked-key-1%'");
    expect(used).toMatchObject({ action: 'auth.failure', outcome: 'failure', tenant: tenant.id, principal: merchantKey!.id, token: null, details: { reason: 'revoked_key' } });
    const [guessed] = await events(h, "event LIKE '%req-revoked-key-2%'");
    expect(guessed).toMatchObject({ action: 'auth.failure', tenant: null, principal: 'anonymous', details: { reason: 'unknown_key' } });

    // The tenant's auditor finds it in the tenant's own export.
    const exported = await request(h.app).get(`/v1/audit/events?from=${encodeURIComponent(since)}`).set(bearer(keys.auditor!)).buffer(true).parse((res, done) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      res.on('end', () => done(null, text));
    });
    expect(exported.status).toBe(200);
    const shown = (exported.body as string).split('\n').filter((l) => l.startsWith('{"type":"event"')).map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event);
    expect(shown.filter((e) => e.action === 'auth.failure')).toEqual([expect.objectContaining({ principal: merchantKey!.id, request_id: 'req-revoked-key-1' })]);
  });

  it('names every action the vault can record in the closed list', () => {
    expect([...AUDIT_ACTIONS].sort()).toEqual(
      ['api_key.create', 'api_key.revoke', 'audit.export', 'audit.read', 'auth.denied', 'auth.failure', 'card.delete', 'card.detokenize', 'card.read', 'card.tokenize', 'card.update', 'client_session.create', 'client_session.redeem', 'key.data_key.create', 'key.encryption.create', 'key.encryption.retire', 'key.signing.create', 'policy.load', 'service.start', 'service.stop', 'tenant.create',
       'updater.settings.update', 'updater.enroll', 'updater.unenroll', 'updater.run.start', 'updater.run.finish', 'updater.card_update',
       'card.refresh', 'card.updates.read', 'webhook.endpoint.create', 'webhook.endpoint.disable', 'webhook.redrive',
       'webhook.endpoints.read', 'webhook.deliveries.read', 'updater.settings.read', 'updater.runs.read',
       'key.rotation.start', 'key.rotation.rewrap', 'key.rotation.reencrypt', 'key.rotation.complete', 'key.rotation.abort', 'key.rotation.reencrypt_requested',
       'key.fingerprint_rotation.start', 'key.fingerprint_rotation.backfill', 'key.fingerprint_rotation.switch',
       'key.fingerprint_rotation.retire', 'key.fingerprint_rotation.complete'].sort(),
    );
  });

  it('refuses an export range that names no calendar day instead of moving it to another', async () => {
    const { keys } = await h.tenant(['auditor']);
    for (const query of ['from=2026-02-30', 'to=2026-04-31', 'from=2026-02-29T10:00:00Z', 'to=2026-06-31T00:00:00%2B02:00']) {
      const res = await request(h.app).get(`/v1/audit/events?${query}`).set(bearer(keys.auditor!));
      expect([query, res.status, res.body.code]).toEqual([query, 400, 'invalid_field']);
    }
    const leap = await request(h.app).get('/v1/audit/events?from=2028-02-29&to=2028-03-01T00:00:00Z').set(bearer(keys.auditor!));
    expect(leap.status).toBe(200);
  });

  it('answers HEAD on the export with the headers of a GET, without exporting or recording an export', async () => {
    const { tenant, keys } = await h.tenant(['auditor', 'merchant']);
    const exports = async () => (await events(h, "tenant_id = $1 AND event LIKE '%audit.export%'", [tenant.id])).length;
    const checkpoints = async () => Number((await h.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_checkpoints'))[0]!.n);
    await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()));
    const before = await checkpoints();
    const head = await request(h.app).head('/v1/audit/events?from=2026-01-01').set(bearer(keys.auditor!));
    expect(head.status).toBe(200);
    expect(head.text ?? '').toBe('');
    // No audit.export recorded, nor the checkpoint every export first signs over the new event.
    expect(await exports()).toBe(0);
    expect(await checkpoints()).toBe(before);

    const get = await request(h.app).get('/v1/audit/events?from=2026-01-01').set(bearer(keys.auditor!));
    expect(head.headers['content-type']).toBe(get.headers['content-type']);
    expect(head.headers['cache-control']).toBe(get.headers['cache-control']);
    expect(head.headers['content-length']).toBe(get.headers['content-length']);
    expect(await exports()).toBe(1);

    // The same refusals as a GET: a bad range, a role without audit.read (recorded as a denied export).
    expect((await request(h.app).head('/v1/audit/events?from=2026-02-30').set(bearer(keys.auditor!))).status).toBe(400);
    expect((await request(h.app).head('/v1/audit/events').set(bearer(keys.merchant!))).status).toBe(403);
    const denied = await events(h, "tenant_id = $1 AND event LIKE '%auth.denied%'", [tenant.id]);
    expect(denied).toEqual([expect.objectContaining({ details: { attempted: 'audit.export', code: 'forbidden' } })]);
  });
});

describe('no audit, no card', () => {
  let fresh: FreshDatabase;
  let h: Harness;
  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_noaudit');
    h = await buildHarness({ db: fresh.db });
  });
  afterAll(async () => {
    await h.close();
    await fresh.drop();
  });

  it('answers 503 audit_unavailable and reveals nothing when the detokenize event cannot be written', async () => {
    const { keys } = await h.tenant(['merchant', 'payments']);
    const pan = newPan();
    const token = (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan))).body.token as string;
    // A real write failure inside PostgreSQL, for detokenize events only.
    await fresh.db.query(`ALTER TABLE audit_events ADD CONSTRAINT refuse_detokenize CHECK (event NOT LIKE '%"action":"card.detokenize"%')`);
    const res = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('audit_unavailable');
    expect(res.text).not.toContain(pan);
    expect(res.text).not.toContain(pan.slice(6, 12));
    await fresh.db.query('ALTER TABLE audit_events DROP CONSTRAINT refuse_detokenize');
    const retry = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(retry.body.card.number).toBe(pan);
  });
});

describe('the runtime role', () => {
  let database: RuntimeRoleDatabase;
  beforeAll(async () => {
    database = await databaseWithRuntimeRole('cardvault_role');
  });
  afterAll(() => database.drop());

  it('runs the vault but may only insert and select audit rows', async () => {
    const db = openPostgres({ url: database.url, poolSize: 4 });
    const h = await buildHarness({ db });
    try {
      const { keys } = await h.tenant(['merchant', 'payments']);
      const pan = newPan();
      const token = (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan))).body.token;
      const res = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
      expect(res.body.card.number).toBe(pan);
      await expect(db.query("UPDATE audit_events SET event = '{}' WHERE seq = 0")).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('DELETE FROM audit_events WHERE seq = 0')).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('TRUNCATE audit_events')).rejects.toMatchObject({ code: '42501' });
      await expect(db.query('ALTER TABLE audit_events DISABLE TRIGGER USER')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await h.close();
      await db.close();
    }
  });
});

describe('two instances, one log', () => {
  let fresh: FreshDatabase;
  let a: Harness;
  let b: Harness;
  let dir: string;
  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_twolog', 20);
    a = await buildHarness({ db: fresh.db });
    b = await buildHarness({ db: openPostgres({ url: fresh.url, poolSize: 10 }) });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-export-'));
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await b.db.close();
    await fresh.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes one gap-free log under concurrent load that the auditor tool verifies', async () => {
    const { keys } = await a.tenant();
    const work = Array.from({ length: 60 }, async (_, i) => {
      const h = i % 2 ? a : b;
      const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(newPan()));
      await request(i % 3 ? a.app : b.app).post(`/v1/tokens/${created.body.token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    });
    await Promise.all(work);
    await Promise.all([a.parts.audit.flush(), b.parts.audit.flush()]);

    const seqs = (await fresh.db.query<{ seq: string }>('SELECT seq FROM audit_events ORDER BY seq')).map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i));
    expect(seqs.length).toBeGreaterThanOrEqual(120);

    const exported = await request(a.app).get('/v1/audit/events').set(bearer(keys.admin!)).buffer(true).parse((res, done) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      res.on('end', () => done(null, text));
    });
    expect(exported.headers['content-type']).toMatch(/application\/x-ndjson/);
    const file = path.join(dir, 'export.ndjson');
    fs.writeFileSync(file, exported.body as string);
    const jwksFile = path.join(dir, 'jwks.json');
    fs.writeFileSync(jwksFile, JSON.stringify((await request(b.app).get('/.well-known/jwks.json')).body));

    const out: string[] = [];
    expect(await verifyCommand(file, jwksFile, (l) => out.push(l))).toBe(0);
    expect(JSON.parse(out[0]!)).toMatchObject({ ok: true, first_bad_seq: null });

    // Deleting a row is caught and named.
    const lines = (exported.body as string).split('\n');
    const victim = lines.findIndex((l) => l.startsWith('{"type":"event","seq":42,'));
    fs.writeFileSync(file, lines.filter((_, i) => i !== victim).join('\n'));
    out.length = 0;
    expect(await verifyCommand(file, jwksFile, (l) => out.push(l))).toBe(1);
    expect(JSON.parse(out[0]!)).toMatchObject({ ok: false, first_bad_seq: 42 });
  });

  it('serves inclusion and consistency proofs that check against signed roots', async () => {
    const { keys } = await a.tenant(['auditor']);
    const auditor = bearer(keys.auditor!);
    const first = (await request(a.app).get('/v1/audit/checkpoint').set(auditor)).body;
    await request(a.app).post('/v1/tokens').set(bearer((await a.tenant(['merchant'])).keys.merchant!)).send(cardBody(newPan()));
    await a.parts.checkpointer.checkpointNow();
    const second = (await request(a.app).get('/v1/audit/checkpoint').set(auditor)).body;
    expect(second.tree_size).toBeGreaterThan(first.tree_size);
    const jwks = (await request(a.app).get('/.well-known/jwks.json')).body;
    for (const c of [first, second]) {
      const payload = JSON.parse((await verifyCheckpointJws(c.jws, jwks)).payload.toString('utf8'));
      expect(payload).toMatchObject({ origin: 'cardvault-test', tree_size: c.tree_size, root_hash: c.root_hash });
    }

    const seq = 7;
    const inclusion = (await request(a.app).get(`/v1/audit/proofs/inclusion?seq=${seq}&tree_size=${second.tree_size}`).set(auditor)).body;
    const [row] = await fresh.db.query<{ event: string }>('SELECT event FROM audit_events WHERE seq = $1', [seq]);
    const leaf = leafHash(Buffer.from(row!.event, 'utf8'));
    expect(inclusion.leaf_hash).toBe(leaf.toString('base64'));
    const b64 = (xs: string[]) => xs.map((x) => Buffer.from(x, 'base64'));
    expect(verifyInclusion(leaf, seq, second.tree_size, b64(inclusion.proof), Buffer.from(second.root_hash, 'base64'))).toBe(true);

    const consistency = (await request(a.app).get(`/v1/audit/proofs/consistency?first=${first.tree_size}&second=${second.tree_size}`).set(auditor)).body;
    expect(
      verifyConsistency(first.tree_size, second.tree_size, Buffer.from(first.root_hash, 'base64'), Buffer.from(second.root_hash, 'base64'), b64(consistency.proof)),
    ).toBe(true);
    const bad = await request(a.app).get(`/v1/audit/proofs/consistency?first=0&second=${second.tree_size}`).set(auditor);
    expect(bad.status).toBe(400);
  });

  it('serves proofs over a log longer than one read, reading its leaf hashes a chunk at a time', async () => {
    const { tenant, keys } = await a.tenant(['auditor']);
    const auditor = bearer(keys.auditor!);
    const before = (await request(a.app).get('/v1/audit/checkpoint').set(auditor)).body;
    const input = { tenantId: tenant.id, principal: 'system', action: 'service.start', outcome: 'success' } as const;
    await Promise.all(Array.from({ length: 2 * PROOF_READ_CHUNK + 10 }, () => a.parts.audit.record(input)));
    const after = (await a.parts.checkpointer.checkpointNow())!;
    const root = after.rootHash;

    const reads = jest.spyOn(a.parts.auditStore, 'leafHashes');
    try {
      const inclusion = await request(a.app).get(`/v1/audit/proofs/inclusion?seq=3&tree_size=${after.treeSize}`).set(auditor);
      expect(inclusion.status).toBe(200);
      const b64 = (xs: string[]) => xs.map((x) => Buffer.from(x, 'base64'));
      expect(verifyInclusion(Buffer.from(inclusion.body.leaf_hash, 'base64'), 3, after.treeSize, b64(inclusion.body.proof), root)).toBe(true);
      const consistency = await request(a.app).get(`/v1/audit/proofs/consistency?first=${before.tree_size}&second=${after.treeSize}`).set(auditor);
      expect(consistency.status).toBe(200);
      expect(verifyConsistency(before.tree_size, after.treeSize, Buffer.from(before.root_hash, 'base64'), root, b64(consistency.body.proof))).toBe(true);
      // The whole log read in one query held every leaf hash in memory at once: 2 million of them took 350 MB.
      expect(reads.mock.calls.length).toBeGreaterThan(0);
      for (const [from, to] of reads.mock.calls) expect(to - from).toBeLessThanOrEqual(PROOF_READ_CHUNK);
    } finally {
      reads.mockRestore();
    }
  });

  it('refuses the audit routes to a role without audit.read', async () => {
    const { keys } = await a.tenant(['merchant']);
    const res = await request(a.app).get('/v1/audit/checkpoint').set(bearer(keys.merchant!));
    expect(res.status).toBe(403);
  });
});

describe('nothing card-like reaches the audit trail from a request', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness();
  });
  afterAll(() => h.close());

  it('refuses a card number in the token path and a card-like request id before anything is recorded', async () => {
    const { keys } = await h.tenant(['merchant', 'auditor']);
    const pan = newPan();
    const res = await request(h.app).get(`/v1/tokens/${pan}`).set(bearer(keys.merchant!)).set('X-Request-Id', `req-${pan}`);
    expect(res.status).toBe(404);
    expect(res.headers['x-request-id']).not.toContain(pan);
    const tooLong = await request(h.app).get('/v1/audit/proofs/inclusion?seq=0&tree_size=411111111111').set(bearer(keys.auditor!));
    expect(tooLong.status).toBe(400);
    await h.parts.audit.flush();
    const rows = await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events WHERE event LIKE $1', [`%${pan}%`]);
    expect(rows[0]!.n).toBe(0);
  });

  it('still finds an opaque token minted before generation refused card-like ids, and records it on success', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const created = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send({ ...cardBody(newPan()), format: 'opaque' });
    expect(created.status).toBe(201);
    // Such an id was possible (about 3 in 10⁹): refusing its lookups would lose the card.
    const old = `tok_Ab${'7'.repeat(12)}cdEFgh_-`;
    await h.db.query('UPDATE cards SET token = $2 WHERE tenant_id = $1 AND token = $3', [tenant.id, old, created.body.token]);
    const read = await request(h.app).get(`/v1/tokens/${old}`).set(bearer(keys.merchant!));
    expect(read.status).toBe(200);
    expect(read.body.token).toBe(old);
    const reads = (await events(h, 'tenant_id = $1', [tenant.id])).filter((e) => e.action === 'card.read');
    expect(reads.map((e) => [e.outcome, e.token])).toEqual([['success', old]]);
  });

  it('answers a card number behind the opaque token prefix as an unknown token, recording no token', async () => {
    const { tenant, keys } = await h.tenant(['merchant', 'auditor']);
    const pan = newPan();
    for (const path of [`/v1/tokens/tok_${pan}`, `/v1/tokens/tok_${pan.match(/.{1,4}/g)!.join('-')}`]) {
      expect((await request(h.app).get(path).set(bearer(keys.merchant!))).status).toBe(404);
      // A role without the action records its denial with the path's token as well.
      expect((await request(h.app).get(path).set(bearer(keys.auditor!))).status).toBe(403);
    }
    const recorded = await events(h, 'tenant_id = $1', [tenant.id]);
    expect(recorded.filter((e) => e.action === 'auth.denied').map((e) => e.token)).toEqual([null, null]);
    for (const event of recorded) expect(JSON.stringify(event).replace(/-/g, '')).not.toContain(pan);
  });

  it('replaces a request id that spells a card number with separators, so it reaches neither the answer nor the trail', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const pan = newPan();
    for (const separated of [pan.match(/.{1,4}/g)!.join('-'), pan.split('').join('-')]) {
      const res = await request(h.app).get(`/v1/tokens/tok_${'a'.repeat(16)}`).set(bearer(keys.merchant!)).set('X-Request-Id', separated);
      expect(res.status).toBe(404);
      expect(res.headers['x-request-id']).not.toBe(separated);
      expect(res.headers['x-request-id']!.replace(/[^0-9]/g, '')).not.toContain(pan.slice(0, 12));
    }
    await h.parts.audit.flush();
    const rows = await h.db.query<{ event: string }>("SELECT event FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = 'card.read'", [tenant.id]);
    expect(rows).toHaveLength(2);
    for (const { event } of rows) expect(event.replace(/[^0-9]/g, '')).not.toContain(pan.slice(0, 12));
  });

  it('records a denial on the audit routes', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    expect((await request(h.app).get('/v1/audit/events').set(bearer(keys.merchant!))).status).toBe(403);
    const denied = await events(h, "tenant_id = $1 AND event LIKE '%auth.denied%'", [tenant.id]);
    expect(denied[0]).toMatchObject({ outcome: 'denied', details: { attempted: 'audit.export', code: 'forbidden' } });
  });
});
