// Cards and idempotency records in PostgreSQL: one method per query, named for its intent.
import type { CardRecord, CardStore, IdempotencyRecord, NewCard, SealedCard } from '../domain/ports';
import type { TokenFormat } from '../domain/token';
import type { Db, Queryable } from './db';

interface CardRow {
  tenant_id: string;
  token: string;
  format: TokenFormat;
  status: 'active' | 'deleted';
  fingerprint: string;
  brand: string;
  bin: string;
  last4: string;
  exp_month: number;
  exp_year: number;
  data_key_id: string;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  created_at: Date;
  updated_at: Date;
}

const CARD_COLUMNS =
  'tenant_id, token, format, status, fingerprint, brand, bin, last4, exp_month, exp_year, data_key_id, iv, tag, ciphertext, created_at, updated_at';

function toRecord(row: CardRow): CardRecord {
  return {
    tenantId: row.tenant_id,
    token: row.token,
    format: row.format,
    status: row.status,
    fingerprint: row.fingerprint,
    brand: row.brand,
    bin: row.bin,
    last4: row.last4,
    expMonth: row.exp_month,
    expYear: row.exp_year,
    sealed: { dataKeyId: row.data_key_id, iv: row.iv, tag: row.tag, ciphertext: row.ciphertext },
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const first = (rows: CardRow[]) => (rows[0] ? toRecord(rows[0]) : undefined);

export class PgCardStore implements CardStore {
  constructor(
    private readonly q: Queryable,
    private readonly db?: Db,
  ) {}

  transaction<T>(fn: (tx: CardStore) => Promise<T>): Promise<T> {
    if (!this.db) throw new Error('nested transactions are not supported');
    return this.db.transaction((tx) => fn(new PgCardStore(tx)));
  }

  async insertCard(card: NewCard): Promise<CardRecord | undefined> {
    const rows = await this.q.query<CardRow>(
      `INSERT INTO cards (tenant_id, token, format, fingerprint, brand, bin, last4, exp_month, exp_year,
                          data_key_id, iv, tag, ciphertext)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
       ON CONFLICT DO NOTHING
       RETURNING ${CARD_COLUMNS}`,
      [
        card.tenantId, card.token, card.format, card.fingerprint, card.brand, card.bin, card.last4,
        card.expMonth, card.expYear, card.sealed.dataKeyId, card.sealed.iv, card.sealed.tag, card.sealed.ciphertext,
      ],
    );
    return first(rows);
  }

  async findActiveCardByFingerprint(tenantId: string, fingerprint: string): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND fingerprint = $2 AND status = 'active'`,
        [tenantId, fingerprint],
      ),
    );
  }

  async findActiveCard(tenantId: string, token: string): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND token = $2 AND status = 'active'`,
        [tenantId, token],
      ),
    );
  }

  async extendExpiry(tenantId: string, token: string, expMonth: number, expYear: number): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `UPDATE cards SET exp_month = $3, exp_year = $4, updated_at = now()
         WHERE tenant_id = $1 AND token = $2 AND status = 'active' AND (exp_year, exp_month) < ($4::smallint, $3::smallint)
         RETURNING ${CARD_COLUMNS}`,
        [tenantId, token, expMonth, expYear],
      ),
    );
  }

  async updateCard(
    tenantId: string,
    token: string,
    changes: { expMonth?: number; expYear?: number; sealed?: SealedCard },
  ): Promise<CardRecord | undefined> {
    const s = changes.sealed;
    return first(
      await this.q.query<CardRow>(
        `UPDATE cards SET
           exp_month = COALESCE($3, exp_month), exp_year = COALESCE($4, exp_year),
           data_key_id = COALESCE($5, data_key_id), iv = COALESCE($6, iv), tag = COALESCE($7, tag),
           ciphertext = COALESCE($8, ciphertext), updated_at = now()
         WHERE tenant_id = $1 AND token = $2 AND status = 'active'
         RETURNING ${CARD_COLUMNS}`,
        [tenantId, token, changes.expMonth ?? null, changes.expYear ?? null, s?.dataKeyId ?? null, s?.iv ?? null, s?.tag ?? null, s?.ciphertext ?? null],
      ),
    );
  }

  async destroyCard(tenantId: string, token: string): Promise<boolean> {
    const rows = await this.q.query(
      `UPDATE cards SET status = 'deleted', fingerprint = NULL, data_key_id = NULL, iv = NULL, tag = NULL,
                        ciphertext = NULL, deleted_at = now(), updated_at = now()
       WHERE tenant_id = $1 AND token = $2 AND status = 'active'
       RETURNING token`,
      [tenantId, token],
    );
    return rows.length === 1;
  }

  async claimIdempotencyKey(
    tenantId: string,
    key: string,
    requestDigest: string,
    ttlSeconds: number,
  ): Promise<{ claimed: true } | { claimed: false; record: IdempotencyRecord }> {
    // A concurrent claim of the same key blocks here until the first transaction ends, then sees its row.
    const claimed = await this.q.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_digest, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4))
       ON CONFLICT (tenant_id, key) DO UPDATE
         SET request_digest = EXCLUDED.request_digest, response = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
         WHERE idempotency_keys.expires_at < now()
       RETURNING key`,
      [tenantId, key, requestDigest, ttlSeconds],
    );
    if (claimed.length === 1) return { claimed: true };
    const rows = await this.q.query<{ request_digest: string; response: unknown }>(
      'SELECT request_digest, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2',
      [tenantId, key],
    );
    const row = rows[0]!;
    return { claimed: false, record: { requestDigest: row.request_digest, response: row.response } };
  }

  async completeIdempotencyKey(tenantId: string, key: string, response: unknown): Promise<void> {
    await this.q.query('UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND key = $2', [
      tenantId,
      key,
      JSON.stringify(response),
    ]);
  }
}

/** Removes idempotency records past their retention; run periodically. */
export async function purgeExpiredIdempotencyKeys(db: Queryable): Promise<number> {
  const rows = await db.query('DELETE FROM idempotency_keys WHERE expires_at < now() RETURNING key');
  return rows.length;
}
