import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let a: Harness;
let b: Harness;

beforeAll(async () => {
  // Two app instances, each with its own pool, keyring and caches, on one database: two vault processes.
  a = await buildHarness();
  b = await buildHarness();
});
afterAll(async () => {
  await a.close();
  await b.close();
});

it('gives one token when two instances tokenize the same PAN at the same instant', async () => {
  const { tenant, keys } = await a.tenant(['merchant']);
  const pans = Array.from({ length: 25 }, () => newPan());
  const send = (h: Harness, pan: string) => request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
  const results = await Promise.all(pans.flatMap((pan) => [send(a, pan), send(b, pan), send(a, pan), send(b, pan)]));

  for (let i = 0; i < pans.length; i += 1) {
    const four = results.slice(i * 4, i * 4 + 4);
    expect(new Set(four.map((r) => r.body.token)).size).toBe(1);
    expect(four.filter((r) => r.status === 201)).toHaveLength(1);
    expect(four.filter((r) => r.status === 200)).toHaveLength(3);
  }
  const rows = await a.db.query<{ n: number }>("SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1 AND status = 'active'", [tenant.id]);
  expect(rows[0]!.n).toBe(pans.length);
});

it('lets either instance detokenize what the other sealed', async () => {
  const { keys } = await a.tenant(['merchant', 'payments']);
  const pan = newPan();
  const created = await request(a.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan));
  const res = await request(b.app).post(`/v1/tokens/${created.body.token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'refund' });
  expect(res.body.card.number).toBe(pan);
});
