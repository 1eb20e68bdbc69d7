// The account updater over HTTP and the worker, on the real PostgreSQL, answered by the simulator through real files.
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { deriveNewPan } from '../../src/updater/network/simulator';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan, recordPan } from '../support/pans';

let h: Harness;
let keys: Record<string, string>;
let tenantId: string;

beforeAll(async () => {
  h = await buildHarness();
  const t = await h.tenant();
  keys = t.keys;
  tenantId = t.tenant.id;
});
afterAll(() => h.close());

const merchant = () => bearer(keys.merchant!);
const tokenize = async (pan: string, expYear = 2031) => {
  const res = await request(h.app).post('/v1/tokens').set(merchant()).send(cardBody(pan, { exp_year: expYear }));
  expect(res.status).toBeLessThan(300);
  return res.body.token as string;
};
const enroll = (token: string, body: object = { enrolled: true, consent_reference: 'consent-ab' }) =>
  request(h.app).put(`/v1/tokens/${token}/account-updater`).set(merchant()).send(body);
const detokenize = (token: string) => request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
const configure = (body: object = { networks: { visa: { merchant_id: 'M-VISA-1' }, mastercard: { merchant_id: 'M-MC-1' } } }) =>
  request(h.app).put('/v1/account-updater/settings').set(merchant()).send(body);

async function runToCompletion(): Promise<Record<string, any>> {
  const started = await request(h.app).post('/v1/account-updater/runs').set(merchant()).send({});
  expect(started.status).toBe(202);
  await h.updater.worker.tick(tenantId);
  const run = await request(h.app).get(`/v1/account-updater/runs/${started.body.id}`).set(merchant());
  expect(run.status).toBe(200);
  return run.body;
}

describe('settings and enrollment', () => {
  it('stores per-tenant settings and refuses bad ones with a stable code', async () => {
    expect((await request(h.app).get('/v1/account-updater/settings').set(merchant())).body.code).toBe('updater_not_configured');
    const bad = [
      { networks: {} },
      { networks: { amex: { merchant_id: 'X' } } },
      { networks: { visa: { merchant_id: 'has space' } } },
      { networks: { visa: { merchant_id: 'M1' } }, cadence_days: 181 },
      { networks: { visa: { merchant_id: 'M1' } }, cadence_days: 0 },
    ];
    for (const body of bad) expect((await configure(body)).status).toBe(400);
    const saved = await configure({ networks: { visa: { merchant_id: 'M-VISA-1' } }, cadence_days: 90 });
    expect(saved.status).toBe(200);
    expect(saved.body).toMatchObject({ enabled: true, cadence_days: 90, networks: { visa: { merchant_id: 'M-VISA-1' } } });
    expect((await request(h.app).get('/v1/account-updater/settings').set(merchant())).body.cadence_days).toBe(90);
    const denied = await request(h.app).put('/v1/account-updater/settings').set(bearer(keys.payments!)).send({ networks: { visa: { merchant_id: 'M1' } } });
    expect(denied.status).toBe(403);
  });

  it('records card-on-file consent, and opts a card out again', async () => {
    const token = await tokenize(newPan('411111'));
    const enrolled = await enroll(token);
    expect(enrolled.status).toBe(200);
    expect(enrolled.body.account_updater).toMatchObject({ enrolled: true, consent_reference: 'consent-ab' });
    const firstAt = enrolled.body.account_updater.enrolled_at;
    expect((await enroll(token)).body.account_updater.enrolled_at).toBe(firstAt);
    const out = await enroll(token, { enrolled: false });
    expect(out.body.account_updater).toMatchObject({ enrolled: false, enrolled_at: null, consent_reference: null });
  });

  it('refuses cards no updater covers, consent references that could hold a card number, and unknown tokens', async () => {
    expect((await enroll(await tokenize(newPan('378282', 15)))).body.code).toBe('network_not_supported');
    const token = await tokenize(newPan('411111'));
    const pan = newPan('411111');
    const leaky = await enroll(token, { enrolled: true, consent_reference: pan });
    expect(leaky.status).toBe(400);
    expect(JSON.stringify(leaky.body)).not.toContain(pan);
    // Dashes between the groups hide no digit from the check; the reference would be stored and returned.
    const dashed = await enroll(token, { enrolled: true, consent_reference: pan.match(/.{1,4}/g)!.join('-') });
    expect(dashed.status).toBe(400);
    expect(dashed.body.code).toBe('invalid_field');
    expect(JSON.stringify(dashed.body).replace(/[^0-9]/g, '')).not.toContain(pan);
    expect((await enroll('tok_doesnotexistatall00')).status).toBe(404);
  });
});

describe('a run over every outcome', () => {
  const cards: Array<{ token: string; pan: string }> = [];
  let run: Record<string, any>;

  beforeAll(async () => {
    await configure();
    for (let i = 0; i < 200; i++) {
      const pan = newPan(i % 2 === 0 ? '411111' : '555555');
      const token = await tokenize(pan);
      expect((await enroll(token)).status).toBe(200);
      cards.push({ token, pan });
    }
    // One card left out: not enrolled, so never inquired.
    cards.push({ token: await tokenize(newPan('411111')), pan: '' });
    run = await runToCompletion();
  });

  it('completes with progress and counts for every inquired card', () => {
    expect(run.state).toBe('completed');
    expect(run.progress).toEqual({ done: 200, total: 200 });
    expect(Object.values(run.counts as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(run.progress.total);
    expect(run.errors).toEqual([]);
  });

  it('keeps every token and applies each answer to the card behind it', async () => {
    const answers = await h.db.query<{ token: string; outcome: string }>(
      `SELECT i.token, i.outcome FROM updater_inquiries i JOIN updater_batches b ON b.id = i.batch_id WHERE b.run_id = $1`,
      [run.id],
    );
    const outcomeOf = new Map(answers.map((a) => [a.token, a.outcome]));
    expect(new Set(answers.map((a) => a.outcome)).size).toBeGreaterThanOrEqual(7);
    expect(outcomeOf.has(cards[cards.length - 1]!.token)).toBe(false);
    for (const { token, pan } of cards.slice(0, -1)) {
      const outcome = outcomeOf.get(token)!;
      const meta = (await request(h.app).get(`/v1/tokens/${token}`).set(merchant())).body;
      const history = (await request(h.app).get(`/v1/tokens/${token}/updates`).set(merchant())).body;
      expect(meta.token).toBe(token);
      const revealed = await detokenize(token);
      if (outcome === 'new_account') {
        const fresh = recordPan(deriveNewPan(pan));
        expect(revealed.body.card.number).toBe(fresh);
        expect(meta.card.last4).toBe(fresh.slice(-4));
        expect(history.updates.map((u: any) => u.event)).toEqual(['card.updated']);
        expect(history.updates[0].changes.previous.last4).toBe(pan.slice(-4));
      } else if (outcome === 'closed') {
        expect(revealed.status).toBe(409);
        expect(revealed.body.code).toBe('card_closed');
        expect(meta.status).toBe('closed');
        expect(history.updates.map((u: any) => u.event)).toEqual(['card.closed']);
      } else {
        expect(revealed.body.card.number).toBe(pan);
        if (outcome === 'new_expiry') {
          expect(meta.card.exp_year).toBeGreaterThan(2031);
          expect(revealed.body.card.exp_year).toBe(meta.card.exp_year);
          expect(history.updates.map((u: any) => u.event)).toEqual(['card.expiry_updated']);
        } else if (outcome === 'contact_cardholder') {
          expect(meta.contact_cardholder).toBe(true);
          expect(history.updates.map((u: any) => u.event)).toEqual(['card.contact_cardholder']);
        } else if (outcome === 'opted_out') {
          expect(meta.account_updater.enrolled).toBe(false);
        } else {
          expect(history.updates).toEqual([]);
          expect(meta.version).toBe(1);
        }
      }
      expect(meta.version).toBe(1 + history.updates.length);
      expect(JSON.stringify(history)).not.toContain(pan);
      if (outcome === 'new_account') expect(JSON.stringify(history)).not.toContain(deriveNewPan(pan));
    }
  });

  it('audits every change with its version, never a card number', async () => {
    const updates = await h.db.query<{ id: string; audited_at: Date | null }>('SELECT id, audited_at FROM card_updates WHERE run_id = $1', [run.id]);
    expect(updates.length).toBeGreaterThan(0);
    expect(updates.every((u) => u.audited_at !== null)).toBe(true);
    await h.parts.audit.flush();
    const events = await h.db.query<{ details: any }>(
      `SELECT event::jsonb -> 'details' AS details FROM audit_events
       WHERE event::jsonb ->> 'action' = 'updater.card_update' AND event::jsonb -> 'details' ->> 'run_id' = $1`,
      [run.id],
    );
    expect(events.map((e) => String(e.details.update_id)).sort()).toEqual(updates.map((u) => String(u.id)).sort());
    expect(events.every((e) => typeof e.details.version === 'number' && e.details.version >= 2)).toBe(true);
    const text = JSON.stringify(events);
    for (const { pan } of cards.slice(0, -1)) {
      expect(text).not.toContain(pan);
      expect(text).not.toContain(deriveNewPan(pan));
    }
  });

  it('leaves no batch file behind: they hold card numbers', () => {
    const leftovers = listFiles(h.updaterDropDir);
    expect(leftovers).toEqual([]);
  });

  it('starts no second run while one is open, and a finished one does not block the next', async () => {
    const a = await request(h.app).post('/v1/account-updater/runs').set(merchant()).send({ scope: 'all' });
    const b = await request(h.app).post('/v1/account-updater/runs').set(merchant()).send({ scope: 'all' });
    expect(a.status).toBe(202);
    expect(b.status).toBe(200);
    expect(b.body.id).toBe(a.body.id);
    await h.updater.worker.tick(tenantId);
    const listed = await request(h.app).get('/v1/account-updater/runs').set(merchant());
    expect(listed.body.runs[0]).toMatchObject({ id: a.body.id, state: 'completed' });
  });
});

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name));
}

describe('real-time refresh', () => {
  it('asks the network about one card now and applies the answer', async () => {
    await configure();
    // The simulator's rules reissue Visa's published 4242 test card.
    const pan = '4242424242424242';
    const token = await tokenize(pan);
    expect((await enroll(token)).status).toBe(200);
    const res = await request(h.app).post(`/v1/tokens/${token}/refresh`).set(merchant()).send();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'new_account', network: 'visa', network_code: 'A' });
    expect(res.body.card.token).toBe(token);
    expect(res.body.updates).toHaveLength(1);
    expect(res.body.updates[0]).toMatchObject({ event: 'card.updated', source: 'real_time', version: 2 });
    const fresh = recordPan(deriveNewPan(pan));
    expect((await detokenize(token)).body.card.number).toBe(fresh);
    // Asked again, the network answers about the new number (whatever its rules say of it): the card's version
    // never goes back.
    const again = await request(h.app).post(`/v1/tokens/${token}/refresh`).set(merchant()).send();
    expect(again.status).toBe(200);
    expect(again.body.card.version).toBeGreaterThanOrEqual(2);
  });

  it('refuses a card that is not enrolled, and a closed one, each with its own code', async () => {
    await configure();
    const token = await tokenize(newPan('411111'));
    const res = await request(h.app).post(`/v1/tokens/${token}/refresh`).set(merchant()).send();
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('card_not_enrolled');
  });

  it('sends nothing to the network while the tenant has the updater turned off', async () => {
    const token = await tokenize(newPan('411111'));
    await configure();
    expect((await enroll(token)).status).toBe(200);
    expect((await configure({ enabled: false, networks: { visa: { merchant_id: 'M-VISA-1' } } })).status).toBe(200);
    const inquire = jest.spyOn(h.updater.adapters.visa, 'inquire');
    try {
      const res = await request(h.app).post(`/v1/tokens/${token}/refresh`).set(merchant()).send();
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('updater_not_configured');
      expect(inquire).not.toHaveBeenCalled();
    } finally {
      inquire.mockRestore();
      await configure();
    }
  });
});
