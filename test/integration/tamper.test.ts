import request from 'supertest';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

let h: Harness;
let keys: Record<string, string>;
let tenantId: string;

beforeAll(async () => {
  h = await buildHarness();
  const t = await h.tenant(['merchant', 'payments']);
  keys = t.keys;
  tenantId = t.tenant.id;
});
afterAll(() => h.close());

const tokenize = async (pan: string) => (await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send(cardBody(pan))).body.token as string;
const detokenize = (token: string) => request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });

it('fails to open a ciphertext swapped between two rows, revealing neither card', async () => {
  const [panA, panB] = [newPan(), newPan()];
  const [tokenA, tokenB] = [await tokenize(panA), await tokenize(panB)];
  // Same tenant, same data key: only the AAD (tenant ‖ token) tells the rows apart.
  await h.db.query(
    `UPDATE cards c SET iv = o.iv, tag = o.tag, ciphertext = o.ciphertext, data_key_id = o.data_key_id
     FROM cards o WHERE c.tenant_id = $1 AND o.tenant_id = $1
       AND ((c.token = $2 AND o.token = $3) OR (c.token = $3 AND o.token = $2))`,
    [tenantId, tokenA, tokenB],
  );
  for (const token of [tokenA, tokenB]) {
    const res = await detokenize(token);
    expect(res.status).toBe(500);
    expect(res.body.code).toBe('internal_error');
    expect(res.text).not.toContain(panA);
    expect(res.text).not.toContain(panB);
  }
});

it('fails to open a ciphertext with one flipped byte', async () => {
  const token = await tokenize(newPan());
  await h.db.query(
    `UPDATE cards SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) WHERE tenant_id = $1 AND token = $2`,
    [tenantId, token],
  );
  expect((await detokenize(token)).status).toBe(500);
});

it('refuses to store a truncated GCM tag at all', async () => {
  const token = await tokenize(newPan());
  await expect(
    h.db.query('UPDATE cards SET tag = substring(tag FROM 1 FOR 4) WHERE tenant_id = $1 AND token = $2', [tenantId, token]),
  ).rejects.toMatchObject({ code: '23514' });
});

it('keeps no PAN digits in the cards table beyond BIN and last 4', async () => {
  const pan = newPan();
  const token = await tokenize(pan);
  const rows = await h.db.query<{ text: string }>('SELECT row_to_json(c)::text AS text FROM cards c WHERE tenant_id = $1 AND token = $2', [tenantId, token]);
  expect(rows[0]!.text).not.toContain(pan);
  expect(rows[0]!.text).not.toContain(pan.slice(6, 12));
});
