// Two fingerprint-key rotations of one tenant under load, from two instances that see each state change at
// different times: no request fails, no number ever gets a second token, and no card number is left anywhere.
import { execFileSync } from 'node:child_process';
import request from 'supertest';
import type { Express } from 'express';
import { RetireBlockedError } from '../../src/crypto/fingerprint-rotation';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

jest.setTimeout(180_000);

/** Instance A re-reads a tenant's fingerprint keys every 100 ms, B every 400 ms; the command waits past both. */
const VIEW_A_MS = 100;
const VIEW_B_MS = 400;
const SETTLE_MS = 2 * VIEW_B_MS + 100;
const PRE_ROTATION_CARDS = 200;
const CLIENTS = 6;

let fresh: FreshDatabase;
let a: Harness;
let b: Harness;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_fpload');
  a = await buildHarness({ db: fresh.db, fingerprintViewMs: VIEW_A_MS });
  b = await buildHarness({ db: fresh.db, fingerprintViewMs: VIEW_B_MS });
});
afterAll(async () => {
  await a.close();
  await b.close();
  await fresh.drop();
});

it('rotates twice under load: 0 failed requests, one token per number, every card on the newest generation', async () => {
  const { tenant, keys } = await a.tenant(['merchant', 'payments']);
  const merchant = bearer(keys.merchant!);
  const payments = bearer(keys.payments!);
  const tokensOf = new Map<string, Set<string>>();
  const note = (pan: string, token: string) => (tokensOf.get(pan) ?? tokensOf.set(pan, new Set()).get(pan)!).add(token);

  const pre: Array<{ pan: string; token: string }> = [];
  for (let i = 0; i < PRE_ROTATION_CARDS; i++) {
    const pan = newPan('411111');
    const res = await request(a.app).post('/v1/tokens').set(merchant).send(cardBody(pan));
    expect(res.status).toBe(201);
    pre.push({ pan, token: res.body.token });
    note(pan, res.body.token);
  }

  let running = true;
  let requests = 0;
  const failures: string[] = [];
  const tokenize = async (app: Express, pan: string, idempotencyKey?: string) => {
    const req = request(app).post('/v1/tokens').set(merchant);
    if (idempotencyKey) req.set('Idempotency-Key', idempotencyKey);
    const res = await req.send(cardBody(pan));
    requests += 1;
    if (res.status !== 200 && res.status !== 201) {
      failures.push(`tokenize ${res.status} ${res.body.code}`);
      return undefined;
    }
    note(pan, res.body.token);
    return res.body.token as string;
  };

  const load = Array.from({ length: CLIENTS }, async (_, client) => {
    for (let i = 0; running; i++) {
      const [here, there] = (client + i) % 2 ? [a.app, b.app] : [b.app, a.app];
      const known = pre[(client * 37 + i * 11) % pre.length]!;
      switch (i % 4) {
        case 0: {
          // The same new number from both instances at once: they must converge on one token.
          const pan = newPan('411111');
          await Promise.all([tokenize(here, pan), tokenize(there, pan)]);
          break;
        }
        case 1:
          if ((await tokenize(here, known.pan)) !== known.token) failures.push('a vaulted number got another token');
          break;
        case 2: {
          const res = await request(here).post(`/v1/tokens/${known.token}/detokenize`).set(payments).send({ purpose: 'authorization' });
          requests += 1;
          if (res.status !== 200 || res.body.card.number !== known.pan) failures.push(`detokenize ${res.status}`);
          break;
        }
        default: {
          // Sent, then retried on the other instance: the replay returns the same token whatever the state.
          const pan = newPan('411111');
          const key = `load-${client}-${i}`;
          const first = await tokenize(here, pan, key);
          if (first !== undefined && (await tokenize(there, pan, key)) !== first) failures.push('a replay returned another token');
        }
      }
    }
  });

  const rotateToTheEnd = async () => {
    const rotator = a.parts.fingerprintRotation.rotator(25, undefined, SETTLE_MS);
    for (;;) {
      try {
        return await rotator.rotate(tenant.id);
      } catch (err) {
        if (!(err instanceof RetireBlockedError)) throw err;
        // The load's idempotency records keyed by the old key: in production the command is re-run after they
        // expire (24 h); here they are expired now, and replays of them after that start over as the vault does.
        await fresh.db.query('UPDATE idempotency_keys SET expires_at = now() - interval \'1 second\' WHERE tenant_id = $1 AND digest_generation <= $2', [
          tenant.id, err.generation,
        ]);
      }
    }
  };

  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = Date.now();
  const first = await rotateToTheEnd();
  const firstMs = Date.now() - started;
  const second = await rotateToTheEnd();
  const totalMs = Date.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 2 * VIEW_B_MS));
  running = false;
  await Promise.all(load);

  const live = await fresh.db.query<{ n: number; odd: number; even: number; distinct_odd: number }>(
    `SELECT count(*)::int AS n, count(fingerprint)::int AS odd, count(fingerprint_even)::int AS even,
            count(DISTINCT fingerprint)::int AS distinct_odd
     FROM cards WHERE tenant_id = $1 AND status IN ('active', 'closed')`,
    [tenant.id],
  );
  const duplicated = [...tokensOf.values()].filter((tokens) => tokens.size !== 1).length;
  // eslint-disable-next-line no-console
  console.log(
    `fingerprint rotation under load: ${requests} requests, ${failures.length} failed, ${live[0]!.n} cards, ` +
      `rotation 1→2 ${firstMs} ms (backfilled ${first.backfilled}), 1→3 ${totalMs} ms (backfilled ${second.backfilled}, cleared ${second.cleared})`,
  );

  expect(failures).toEqual([]);
  expect(requests).toBeGreaterThan(200);
  expect(first.generation).toBe(2);
  expect(second.generation).toBe(3);
  expect(duplicated).toBe(0);
  // One live card per number: every number tokenized, before and during both rotations.
  expect(live[0]).toEqual({ n: tokensOf.size, odd: tokensOf.size, even: 0, distinct_odd: tokensOf.size });
  // Cards vaulted while both keys were written needed no backfill; every other one got one.
  expect(second.backfilled).toBeGreaterThan(0);
  expect(second.backfilled).toBeLessThanOrEqual(live[0]!.n);

  for (const { pan, token } of pre) {
    const again = await request(b.app).post('/v1/tokens').set(merchant).send(cardBody(pan));
    expect(again.status).toBe(200);
    expect(again.body.token).toBe(token);
  }

  // No number in either instance's log or in a dump of the whole database.
  const pans = [...tokensOf.keys()];
  const dump = execFileSync('pg_dump', ['-h', '127.0.0.1', '-U', 'postgres', '--no-owner', fresh.name], { maxBuffer: 1024 * 1024 * 1024, encoding: 'utf8' });
  expect(dump).toContain('COPY public.fingerprint_keys');
  const logs = [...a.captured.lines, ...b.captured.lines].join('\n');
  const hexDump = dump.toLowerCase();
  expect(pans.filter((pan) => dump.includes(pan) || logs.includes(pan) || hexDump.includes(Buffer.from(pan).toString('hex')))).toEqual([]);
});
