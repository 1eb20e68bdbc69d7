// Exactly once: a response file read twice, two workers at once, a fenced-out worker, and the merge of two tokens.
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { answerDrop } from '../../src/updater/network/answer-drop';
import { dropTransport } from '../../src/updater/network/adapter';
import { deriveNewPan, NetworkSimulator } from '../../src/updater/network/simulator';
import { vau } from '../../src/updater/formats/vau';
import { FencedOut } from '../../src/store/updater-store';
import { UpdaterWorker } from '../../src/updater/worker';
import type { CardUpdate } from '../../src/updater/model';
import { buildHarness, type Harness } from '../support/harness';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { bearer, cardBody } from '../support/http';
import { newPan, recordPan } from '../support/pans';
import { reissueRules, type RulesFile } from '../support/reissue-rules';

const VISA_ONLY = { networks: { visa: { merchant_id: 'M-VISA-1' } } };

async function setUpTenant(h: Harness, cards: number) {
  const { tenant, keys } = await h.tenant(['merchant', 'payments']);
  const auth = bearer(keys.merchant!);
  expect((await request(h.app).put('/v1/account-updater/settings').set(auth).send(VISA_ONLY)).status).toBe(200);
  const tokens: Array<{ token: string; pan: string }> = [];
  for (let i = 0; i < cards; i++) {
    const pan = newPan('411111');
    const token = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(pan))).body.token as string;
    expect((await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(auth).send({ enrolled: true })).status).toBe(200);
    tokens.push({ token, pan });
  }
  return { tenant, keys, auth, tokens };
}

/** What a run has changed so far: every card's version, the history rows and the outbox rows. */
async function snapshot(h: Harness, tenantId: string) {
  const [versions, updates, outbox] = await Promise.all([
    h.db.query<{ token: string; version: number }>('SELECT token, version FROM cards WHERE tenant_id = $1 ORDER BY token', [tenantId]),
    h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM card_updates WHERE tenant_id = $1', [tenantId]),
    h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webhook_outbox WHERE tenant_id = $1', [tenantId]),
  ]);
  return { versions, updates: updates[0]!.n, outbox: outbox[0]!.n };
}

describe('with the network answering out of band (file drop)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness({ updater: { network: 'file-drop' } });
  });
  afterAll(() => h.close());

  it('waits for the answer, applies it once, and reading the same file again changes nothing', async () => {
    const { tenant, auth } = await setUpTenant(h, 40);
    const endpoint = await request(h.app).post('/v1/webhook-endpoints').set(auth).send({ url: 'http://127.0.0.1:9/hook' });
    expect(endpoint.status).toBe(201);
    const started = await request(h.app).post('/v1/account-updater/runs').set(auth).send({});
    await h.updater.worker.tick(tenant.id);
    const waiting = (await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(auth)).body;
    expect(waiting).toMatchObject({ state: 'awaiting_response', progress: { done: 0, total: 40 } });

    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [started.body.id]);
    const transport = dropTransport(h.updaterDropDir, 'visa');
    const answered = await answerDrop(transport, vau, batch!.id, NetworkSimulator.fromFile());
    const responseText = fs.readFileSync(answered!, 'utf8');
    await h.updater.worker.tick(tenant.id);
    const done = (await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(auth)).body;
    expect(done).toMatchObject({ state: 'completed', progress: { done: 40, total: 40 } });
    const after = await snapshot(h, tenant.id);
    expect(after.updates).toBeGreaterThan(0);
    expect(after.outbox).toBeGreaterThan(0);

    // The same response dropped again, by a network retry or an operator.
    fs.writeFileSync(answered!, responseText, { mode: 0o600 });
    await h.updater.worker.tick(tenant.id);
    expect(await snapshot(h, tenant.id)).toEqual(after);
    expect(fs.existsSync(answered!)).toBe(false);
    // And handed straight to the processor, mid-run style: still nothing.
    const fence = (await h.updater.store.acquireLock(tenant.id, 'test', 30))!;
    await h.updater.processor.ingest(batch!.id, responseText, fence);
    await h.updater.store.releaseLock(tenant.id, fence);
    expect(await snapshot(h, tenant.id)).toEqual(after);
  });

  it('applies a response that arrives after its run timed out, once, and deletes the file', async () => {
    const { tenant, auth } = await setUpTenant(h, 8);
    const started = await request(h.app).post('/v1/account-updater/runs').set(auth).send({});
    await h.updater.worker.tick(tenant.id);
    // The network takes the request in time, but its answer is held up past UPDATER_RESPONSE_TIMEOUT_HOURS: the
    // run fails with response_timeout.
    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [started.body.id]);
    const answered = (await answerDrop(dropTransport(h.updaterDropDir, 'visa'), vau, batch!.id, NetworkSimulator.fromFile()))!;
    const heldUp = path.join(h.updaterDropDir, 'held-up');
    fs.renameSync(answered, heldUp);
    await h.db.query("UPDATE updater_runs SET started_at = now() - interval '1000 hours' WHERE id = $1", [started.body.id]);
    await h.updater.worker.tick(tenant.id);
    expect((await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(auth)).body).toMatchObject({ state: 'failed' });
    const before = await snapshot(h, tenant.id);

    fs.renameSync(heldUp, answered);
    const responseText = fs.readFileSync(answered, 'utf8');
    await h.updater.worker.tick(tenant.id);
    const after = await snapshot(h, tenant.id);
    expect(after.updates).toBeGreaterThan(before.updates);
    expect(fs.existsSync(answered)).toBe(false);
    const [state] = await h.db.query<{ state: string }>('SELECT state FROM updater_batches WHERE id = $1', [batch!.id]);
    expect(state!.state).toBe('applied');
    const open = await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM updater_inquiries WHERE batch_id = $1 AND outcome IS NULL", [batch!.id]);
    expect(open[0]!.n).toBe(0);

    // Dropped again (the network sends it twice): nothing more changes, and it is deleted again.
    fs.writeFileSync(answered, responseText, { mode: 0o600 });
    await h.updater.worker.tick(tenant.id);
    expect(await snapshot(h, tenant.id)).toEqual(after);
    expect(fs.existsSync(answered)).toBe(false);
  });

  it('does not let a late answer about the number it asked after undo what a newer answer changed', async () => {
    const { tenant, auth, keys, tokens } = await setUpTenant(h, 1);
    const [{ token, pan }] = tokens as [{ token: string; pan: string }];
    const inbox = path.join(h.updaterDropDir, 'visa', 'from-network');
    fs.mkdirSync(inbox, { recursive: true, mode: 0o700 });
    const answer = (batchId: string, response: Parameters<typeof vau.writeResponse>[1][number]) =>
      fs.writeFileSync(path.join(inbox, `${batchId}.resp`), vau.writeResponse(batchId, [response]), { mode: 0o600 });
    const batchOf = async (runId: string) => (await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [runId]))[0]!.id;

    // The first run asks about the card and times out before its answer comes.
    const first = (await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).body.id as string;
    await h.updater.worker.tick(tenant.id);
    const firstBatch = await batchOf(first);
    await h.db.query("UPDATE updater_runs SET started_at = now() - interval '1000 hours' WHERE id = $1", [first]);
    await h.updater.worker.tick(tenant.id);
    // A later run asks again and learns the card was reissued.
    const second = (await request(h.app).post('/v1/account-updater/runs').set(auth).send({ scope: 'all' })).body.id as string;
    await h.updater.worker.tick(tenant.id);
    const reissued = recordPan(newPan('411111'));
    answer(await batchOf(second), { ref: 'c1', outcome: 'new_account', newPan: reissued, newExpMonth: 9, newExpYear: 2033, networkCode: 'A' });
    await h.updater.worker.tick(tenant.id);
    const payments = bearer(keys.payments!);
    const detokenize = () => request(h.app).post(`/v1/tokens/${token}/detokenize`).set(payments).send({ purpose: 'authorization' });
    expect((await detokenize()).body.card.number).toBe(reissued);

    // Now the first answer arrives: the old number was closed. It speaks of a number the token no longer holds.
    answer(firstBatch, { ref: 'c1', outcome: 'closed', networkCode: 'C' });
    await h.updater.worker.tick(tenant.id);
    const revealed = await detokenize();
    expect(revealed.status).toBe(200);
    expect(revealed.body.card.number).toBe(reissued);
    expect(revealed.body.card).toMatchObject({ exp_month: 9, exp_year: 2033 });
    expect((await request(h.app).get(`/v1/tokens/${token}/updates`).set(auth)).body.updates.map((u: any) => u.event)).toEqual(['card.updated']);
    expect(pan).not.toBe(reissued);
  });

  it.each([
    ['a PATCH', (h: Harness, auth: Record<string, string>, token: string, _pan: string) =>
      request(h.app).patch(`/v1/tokens/${token}`).set(auth).send({ card: { exp_month: 3, exp_year: 2035 } }).expect(200)],
    ['tokenizing the number again with a later expiry', (h: Harness, auth: Record<string, string>, _token: string, pan: string) =>
      request(h.app).post('/v1/tokens').set(auth).send(cardBody(pan, { exp_month: 3, exp_year: 2035 })).expect(200)],
  ])('does not let an answer about the card before the merchant changed its expiry (%s) undo that change', async (_how, change) => {
    const { tenant, auth, tokens } = await setUpTenant(h, 1);
    const [{ token, pan }] = tokens as [{ token: string; pan: string }];
    const run = (await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).body.id as string;
    await h.updater.worker.tick(tenant.id);
    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [run]);
    const { version } = (await request(h.app).get(`/v1/tokens/${token}`).set(auth)).body;

    // While the inquiry is out, the merchant learns the new expiry from the cardholder.
    const changed = await change(h, auth, token, pan);
    expect(changed.body).toMatchObject({ card: { exp_month: 3, exp_year: 2035 } });
    expect(changed.body.version).toBe(version + 1);
    // Then the network's answer, about the card as it was asked, arrives.
    const inbox = path.join(h.updaterDropDir, 'visa', 'from-network');
    fs.mkdirSync(inbox, { recursive: true, mode: 0o700 });
    const response = vau.writeResponse(batch!.id, [{ ref: 'c1', outcome: 'new_expiry', newExpMonth: 8, newExpYear: 2032, networkCode: 'E' }]);
    fs.writeFileSync(path.join(inbox, `${batch!.id}.resp`), response, { mode: 0o600 });
    await h.updater.worker.tick(tenant.id);

    expect((await request(h.app).get(`/v1/account-updater/runs/${run}`).set(auth)).body).toMatchObject({ state: 'completed' });
    const card = (await request(h.app).get(`/v1/tokens/${token}`).set(auth)).body;
    expect(card).toMatchObject({ card: { exp_month: 3, exp_year: 2035 }, version: version + 1 });
    expect((await request(h.app).get(`/v1/tokens/${token}/updates`).set(auth)).body.updates).toEqual([]);
  });

  it('does not send the number of a card opted out after its batch was built but before it was sent', async () => {
    const { tenant, auth, tokens } = await setUpTenant(h, 2);
    const adapter = h.updater.adapters.visa;
    const send = jest.spyOn(adapter, 'send').mockRejectedValueOnce(new Error('the relay is down'));
    const started = (await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).body.id as string;
    await expect(h.updater.worker.tick(tenant.id)).rejects.toThrow('the relay is down');
    // While the relay is down, the cardholder withdraws consent for the first card.
    const [optedOut, kept] = tokens as [{ token: string; pan: string }, { token: string; pan: string }];
    expect((await request(h.app).put(`/v1/tokens/${optedOut.token}/account-updater`).set(auth).send({ enrolled: false })).status).toBe(200);
    await h.updater.worker.tick(tenant.id);
    send.mockRestore();
    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [started]);
    const requestFile = path.join(h.updaterDropDir, 'visa', 'to-network', `${batch!.id}.req`);
    const sent = fs.readFileSync(requestFile, 'utf8');
    fs.rmSync(requestFile);
    expect(sent).toContain(kept.pan);
    expect(sent).not.toContain(optedOut.pan);
  });

  it('completes a built run whose network was removed from the settings before it was sent, sending nothing', async () => {
    const { tenant, auth } = await setUpTenant(h, 2);
    const send = jest.spyOn(h.updater.adapters.visa, 'send').mockRejectedValueOnce(new Error('the relay is down'));
    const started = (await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).body.id as string;
    await expect(h.updater.worker.tick(tenant.id)).rejects.toThrow('the relay is down');
    send.mockClear();
    expect((await request(h.app).put('/v1/account-updater/settings').set(auth).send({ networks: { mastercard: { merchant_id: 'M-MC-1' } } })).status).toBe(200);
    await h.updater.worker.tick(tenant.id);
    send.mockRestore();
    expect(send).not.toHaveBeenCalled();
    const run = (await request(h.app).get(`/v1/account-updater/runs/${started}`).set(auth)).body;
    expect(run).toMatchObject({ state: 'completed', progress: { done: 2, total: 2 }, counts: { no_response: 2 } });
    // The tenant is not left with a run that can never finish, which would keep it from ever starting another.
    expect((await request(h.app).post('/v1/account-updater/runs').set(auth).send({})).status).toBe(202);
  });

  it('deletes its request file, which holds card numbers, when no answer comes before the response timeout', async () => {
    const { tenant, auth } = await setUpTenant(h, 3);
    const started = await request(h.app).post('/v1/account-updater/runs').set(auth).send({});
    await h.updater.worker.tick(tenant.id);
    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [started.body.id]);
    const outbox = path.join(h.updaterDropDir, 'visa', 'to-network');
    expect(fs.readdirSync(outbox)).toContain(`${batch!.id}.req`);

    // The relay never takes the request and nothing answers it.
    await h.db.query("UPDATE updater_runs SET started_at = now() - interval '1000 hours' WHERE id = $1", [started.body.id]);
    await h.updater.worker.tick(tenant.id);
    expect((await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(auth)).body).toMatchObject({ state: 'failed' });
    expect(fs.readdirSync(outbox).filter((name) => name.endsWith('.req'))).toEqual([]);
  });

  it('deletes a response file no batch claims once it is older than the response timeout, and keeps a fresh one', async () => {
    const inbox = path.join(h.updaterDropDir, 'visa', 'from-network');
    fs.mkdirSync(inbox, { recursive: true, mode: 0o700 });
    const dropUnclaimed = (batchId: string) => {
      const answer = { ref: 'c1', outcome: 'new_account' as const, newPan: newPan('411111'), newExpMonth: 12, newExpYear: 2031, networkCode: 'A' };
      const file = path.join(inbox, `${batchId}.resp`);
      fs.writeFileSync(file, vau.writeResponse(batchId, [answer]), { mode: 0o600 });
      return file;
    };
    const stale = dropUnclaimed('Bunclaimedstalexyzab');
    const fresh = dropUnclaimed('Bunclaimedfreshxyzab');
    // 73 hours old: past the harness's UPDATER_RESPONSE_TIMEOUT_HOURS of 72.
    const longAgo = new Date(Date.now() - 73 * 3600_000);
    fs.utimesSync(stale, longAgo, longAgo);

    const { tenant } = await h.tenant(['merchant']);
    await h.updater.worker.tick(tenant.id);
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.existsSync(fresh)).toBe(true);
    const warned = h.captured.entries().filter((entry) => entry.batch_id === 'Bunclaimedstalexyzab');
    expect(warned).toEqual([expect.objectContaining({ level: 'warn', network: 'visa' })]);
    expect(JSON.stringify(warned)).not.toContain(h.updaterDropDir);
    fs.rmSync(fresh);
  });

  it('reports malformed records by line and code and still applies the rest', async () => {
    const { tenant, auth } = await setUpTenant(h, 10);
    const started = await request(h.app).post('/v1/account-updater/runs').set(auth).send({});
    await h.updater.worker.tick(tenant.id);
    const [batch] = await h.db.query<{ id: string }>('SELECT id FROM updater_batches WHERE run_id = $1', [started.body.id]);
    const answered = (await answerDrop(dropTransport(h.updaterDropDir, 'visa'), vau, batch!.id, NetworkSimulator.fromFile()))!;
    const lines = fs.readFileSync(answered, 'utf8').split('\n');
    lines[3] = 'D|c3|ZZ||'; // an unknown response code
    lines[5] = 'D|not-a-ref-we-sent||'; // a broken record
    fs.writeFileSync(answered, lines.join('\n'));
    await h.updater.worker.tick(tenant.id);
    const run = (await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(auth)).body;
    expect(run.state).toBe('completed');
    expect(run.progress).toEqual({ done: 10, total: 10 });
    expect(run.errors).toEqual(expect.arrayContaining([expect.objectContaining({ line: 4, code: 'unknown_response_code' }), expect.objectContaining({ line: 6 })]));
    expect(run.counts.no_response).toBe(2);
    const inquired = await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1 AND last_inquired_at IS NOT NULL", [tenant.id]);
    expect(inquired[0]!.n).toBe(10);
  });
});

describe('a run that cannot advance', () => {
  // A database of its own: the worker below takes the lock of every open run it finds.
  let fresh: FreshDatabase;
  let h: Harness;
  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_updater_starve');
    h = await buildHarness({ db: fresh.db, updater: { network: 'file-drop' } });
  });
  afterAll(async () => {
    await h.close();
    await fresh.drop();
  });

  it("does not hold up other tenants' runs in the same pass, and the pass still reports it", async () => {
    const first = await setUpTenant(h, 1);
    const second = await setUpTenant(h, 1);
    const runs = [];
    for (const t of [first, second]) runs.push((await request(h.app).post('/v1/account-updater/runs').set(t.auth).send({})).body.id as string);
    const advanced: string[] = [];
    const broken = new Error('the first tenant cannot advance');
    const processor = Object.create(h.updater.processor) as typeof h.updater.processor;
    processor.advance = async (run) => {
      if (run.tenantId === first.tenant.id) throw broken;
      advanced.push(run.id);
    };
    const worker = new UpdaterWorker({ store: h.updater.store, processor, adapters: h.updater.adapters, audit: h.parts.audit, log: h.log, lockTtlSeconds: 30, pollMs: 1000, auditSweepMs: 60_000 });
    await expect(worker.tick()).rejects.toBe(broken);
    expect(advanced).toContain(runs[1]);
  });
});

describe('matching a crashed worker\'s audit events to its changes', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness({ updater: { network: 'file-drop' } });
  });
  afterAll(() => h.close());

  it('finds an event recorded by a vault whose clock is behind the database\'s, so the sweep does not audit it twice', async () => {
    const updateId = String(Date.now());
    await h.parts.audit.record({ tenantId: null, principal: 'system', action: 'updater.card_update', outcome: 'success', details: { update_id: updateId } });
    // The change's created_at is the database's clock: here two minutes ahead of the vault's.
    const change = { id: updateId, createdAt: new Date(Date.now() + 120_000) } as CardUpdate;
    expect([...(await h.updater.store.alreadyAudited([change]))]).toEqual([updateId]);
  });
});

describe('one worker per tenant', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await buildHarness();
  });
  afterAll(() => h.close());

  it('starts one run when two workers find the same tenant due at once, and applies each answer once', async () => {
    const { tenant } = await setUpTenant(h, 60);
    const second = h.newUpdater();
    await Promise.all([h.updater.worker.tick(tenant.id), second.worker.tick(tenant.id), h.updater.worker.tick(tenant.id)]);
    const runs = await h.db.query<{ state: string; total: number; done: number }>('SELECT state, total, done FROM updater_runs WHERE tenant_id = $1', [tenant.id]);
    expect(runs).toEqual([{ state: 'completed', total: 60, done: 60 }]);
    const perAnswer = await h.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM card_updates WHERE tenant_id = $1 GROUP BY batch_id, ref, token HAVING count(*) > 1',
      [tenant.id],
    );
    expect(perAnswer).toEqual([]);
    const versions = await h.db.query<{ token: string; version: number; n: number }>(
      `SELECT c.token, c.version, (SELECT count(*)::int FROM card_updates u WHERE u.tenant_id = c.tenant_id AND u.token = c.token) AS n
       FROM cards c WHERE c.tenant_id = $1`,
      [tenant.id],
    );
    for (const v of versions) expect(v.version).toBe(1 + v.n);
  });

  it('schedules a tenant only for enrolled cards of its own networks not inquired within its cadence', async () => {
    const { tenant, keys } = await h.tenant(['merchant']);
    const auth = bearer(keys.merchant!);
    await request(h.app).put('/v1/account-updater/settings').set(auth).send({ ...VISA_ONLY, cadence_days: 30 }).expect(200);
    const mastercard = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(newPan('555555')))).body.token as string;
    await request(h.app).put(`/v1/tokens/${mastercard}/account-updater`).set(auth).send({ enrolled: true }).expect(200);
    const runs = async () => (await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM updater_runs WHERE tenant_id = $1', [tenant.id]))[0]!.n;
    await h.updater.worker.tick(tenant.id);
    expect(await runs()).toBe(0);

    const visa = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(newPan('411111')))).body.token as string;
    await request(h.app).put(`/v1/tokens/${visa}/account-updater`).set(auth).send({ enrolled: true }).expect(200);
    await h.db.query("UPDATE cards SET last_inquired_at = now() - interval '29 days' WHERE tenant_id = $1 AND token = $2", [tenant.id, visa]);
    await h.updater.worker.tick(tenant.id);
    expect(await runs()).toBe(0);

    await h.db.query("UPDATE cards SET last_inquired_at = now() - interval '31 days' WHERE tenant_id = $1 AND token = $2", [tenant.id, visa]);
    await h.updater.worker.tick(tenant.id);
    expect(await runs()).toBe(1);
  });

  it('fences out a worker whose lease passed to another: its next write fails and nothing is written', async () => {
    const { tenant } = await setUpTenant(h, 1);
    const store = h.updater.store;
    const first = (await store.acquireLock(tenant.id, 'worker-a', 30))!;
    expect(await store.acquireLock(tenant.id, 'worker-b', 30)).toBeUndefined();
    await h.db.query("UPDATE updater_locks SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", [tenant.id]);
    const second = (await store.acquireLock(tenant.id, 'worker-b', 30))!;
    expect(second).toBe(first + 1);
    await expect(store.fenced(tenant.id, first, async (tx) => tx.query('UPDATE cards SET version = version + 100 WHERE tenant_id = $1', [tenant.id]))).rejects.toBeInstanceOf(FencedOut);
    const [card] = await h.db.query<{ version: number }>('SELECT version FROM cards WHERE tenant_id = $1', [tenant.id]);
    expect(card!.version).toBe(1);
    expect(await store.renewLock(tenant.id, first, 30)).toBe(false);
    expect(await store.renewLock(tenant.id, second, 30)).toBe(true);
    await store.releaseLock(tenant.id, second);
  });
});

describe('merging two tokens of one card', () => {
  let h: Harness;
  let rules: RulesFile;
  const oldPan = newPan('411111');
  const reissued = recordPan(deriveNewPan(oldPan));

  beforeAll(async () => {
    rules = reissueRules(oldPan);
    h = await buildHarness({ updater: { simulatorRules: rules.file } });
  });
  afterAll(async () => {
    await h.close();
    rules.remove();
  });

  it('keeps the updated token, and the token that already held the new number resolves to it', async () => {
    const { keys, auth } = await setUpTenant(h, 0);
    const updated = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(oldPan))).body.token as string;
    const existing = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(reissued))).body.token as string;
    await request(h.app).put(`/v1/tokens/${updated}/account-updater`).set(auth).send({ enrolled: true });
    const refreshed = await request(h.app).post(`/v1/tokens/${updated}/refresh`).set(auth).send();
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.updates.map((u: any) => [u.token, u.event])).toEqual([[existing, 'card.merged'], [updated, 'card.updated']]);
    expect(refreshed.body.updates[1].changes.merged_token).toBe(existing);

    const detokenize = (token: string) => request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect((await detokenize(updated)).body.card.number).toBe(reissued);
    expect((await detokenize(existing)).body.card.number).toBe(reissued);
    const alias = (await request(h.app).get(`/v1/tokens/${existing}`).set(auth)).body;
    expect(alias).toMatchObject({ token: existing, merged_into: updated, status: 'active' });
    const history = (await request(h.app).get(`/v1/tokens/${existing}/updates`).set(auth)).body;
    expect(history.updates.map((u: any) => [u.token, u.event])).toEqual([[existing, 'card.merged'], [updated, 'card.updated']]);
    // The reissued number now belongs to the surviving token: vaulting it again finds that one.
    const again = await request(h.app).post('/v1/tokens').set(auth).send(cardBody(reissued));
    expect(again.status).toBe(200);
    expect(again.body.token).toBe(updated);
  });
});
