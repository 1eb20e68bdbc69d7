// A holder-name update seals the name with the number it read. Should the account updater give the card a new
// number between that read and the write, the update must not put the old number back.
import { Client } from 'pg';
import request from 'supertest';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { Pan } from '../../src/domain/pan';
import { PgCardStore } from '../../src/store/card-store';
import { TEST_DATABASE_URL } from '../support/env';
import { buildHarness, type Harness } from '../support/harness';
import { recordPan } from '../support/pans';
import { waitFor } from '../support/wait-for';

let h: Harness;
beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
const OLD_NUMBER = recordPan('4111111111111111');
const NEW_NUMBER = recordPan('4242424242424242');

/** Whether a statement of another session waits for a row lock on cards (the PATCH's UPDATE, blocked). */
async function updateWaitsForLock(observer: Client): Promise<boolean> {
  const { rows } = await observer.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE cards SET%'`,
  );
  return Number(rows[0]!.n) > 0;
}

describe('PATCH /v1/tokens/{token} with a holder name, racing the account updater', () => {
  it('keeps the number the updater wrote while the update was in flight, with the new name', async () => {
    const { tenant, keys } = await h.tenant(['merchant', 'payments']);
    const tokenized = await request(h.app).post('/v1/tokens').set(bearer(keys.merchant!)).send({ card: { number: OLD_NUMBER, exp_month: 12, exp_year: 2031 } });
    expect(tokenized.status).toBe(201);
    const token = tokenized.body.token as string;

    // The updater's side: the card row locked, as its chunk transaction locks it before writing a new number.
    const updater = new Client({ connectionString: TEST_DATABASE_URL });
    const observer = new Client({ connectionString: TEST_DATABASE_URL });
    await Promise.all([updater.connect(), observer.connect()]);
    try {
      await updater.query('BEGIN');
      await updater.query('SELECT 1 FROM cards WHERE tenant_id = $1 AND token = $2 FOR UPDATE', [tenant.id, token]);

      // The update reads the card (a read takes no lock), seals the new name with the old number, then waits.
      const patched = request(h.app).patch(`/v1/tokens/${token}`).set(bearer(keys.merchant!)).send({ card: { holder_name: 'B CARDHOLDER' } }).then((r) => r);
      await waitFor(() => updateWaitsForLock(observer));

      // The new number lands and commits first, as the updater's new_account answer does.
      const sealed = await createCardCrypto(h.parts.keyring).seal(tenant.id, token, { pan: Pan.parse(NEW_NUMBER), holderName: null });
      await updater.query('UPDATE cards SET bin = $3, last4 = $4, data_key_id = $5, iv = $6, tag = $7, ciphertext = $8 WHERE tenant_id = $1 AND token = $2', [
        tenant.id,
        token,
        NEW_NUMBER.slice(0, 6),
        NEW_NUMBER.slice(-4),
        sealed.dataKeyId,
        sealed.iv,
        sealed.tag,
        sealed.ciphertext,
      ]);
      await updater.query('COMMIT');

      const answer = await patched;
      expect(answer.status).toBe(200);
      expect(answer.body.card).toMatchObject({ last4: NEW_NUMBER.slice(-4) });
    } finally {
      await Promise.all([updater.end(), observer.end()]);
    }

    const revealed = await request(h.app).post(`/v1/tokens/${token}/detokenize`).set(bearer(keys.payments!)).send({ purpose: 'authorization' });
    expect(revealed.status).toBe(200);
    expect(revealed.body.card).toMatchObject({ number: NEW_NUMBER });
    // The name went in too, sealed with the new number (payments does not reveal names: opened here directly).
    const card = (await new PgCardStore(h.db, h.db).findCard(tenant.id, token))!;
    const secret = await createCardCrypto(h.parts.keyring).open(tenant.id, token, card.sealed!);
    expect({ number: secret.pan.reveal(), holderName: secret.holderName }).toEqual({ number: NEW_NUMBER, holderName: 'B CARDHOLDER' });
  });
});
