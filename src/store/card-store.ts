// Cards and idempotency records in PostgreSQL: one method per query, named for its intent.
import type { CardRecord, CardStatus, CardStore, IdempotencyRecord, NewCard, SealedCard } from '../domain/ports';
import type { TokenFormat } from '../domain/token';
import type { Db, Queryable } from './db';

interface CardRow {
  tenant_id: string;
  token: string;
  format: TokenFormat;
  status: CardStatus;
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
  version: number;
  contact_cardholder: boolean;
  updater_enrolled_at: Date | null;
  updater_consent_ref: string | null;
  last_inquired_at: Date | null;
  closed_at: Date | null;
  merged_into: string | null;
}

export const CARD_COLUMNS =
  'tenant_id, token, format, status, fingerprint, brand, bin, last4, exp_month, exp_year, data_key_id, iv, tag, ciphertext, ' +
  'created_at, updated_at, version, contact_cardholder, updater_enrolled_at, updater_consent_ref, last_inquired_at, closed_at, merged_into';

export function toCardRecord(row: CardRow): CardRecord {
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
    // Only active and closed cards keep their ciphertext (the table's CHECK says so).
    sealed: row.ciphertext ? { dataKeyId: row.data_key_id, iv: row.iv, tag: row.tag, ciphertext: row.ciphertext } : null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
    contactCardholder: row.contact_cardholder,
    updater: { enrolledAt: row.updater_enrolled_at, consentRef: row.updater_consent_ref, lastInquiredAt: row.last_inquired_at },
    closedAt: row.closed_at,
    mergedInto: row.merged_into,
  };
}

export type { CardRow };

const first = (rows: CardRow[]) => (rows[0] ? toCardRecord(rows[0]) : undefined);

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

  async findCardByFingerprint(tenantId: string, fingerprint: string): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND fingerprint = $2 AND status IN ('active', 'closed')`,
        [tenantId, fingerprint],
      ),
    );
  }

  async findCard(tenantId: string, token: string): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND token = $2 AND status <> 'deleted'`,
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
                        ciphertext = NULL, merged_into = NULL, updater_enrolled_at = NULL, deleted_at = now(), updated_at = now()
       WHERE tenant_id = $1 AND token = $2 AND status <> 'deleted'
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
