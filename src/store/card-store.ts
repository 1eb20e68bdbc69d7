// Cards and idempotency records in PostgreSQL: one method per query, named for its intent.
import type { Parity } from '../domain/fingerprints';
import { DELETED_CARD_RESPONSE, type CardRecord, type CardStatus, type CardStore, type IdempotencyKeyDigests, type IdempotencyRecord, type NewCard, type RequestDigest, type SealedCard } from '../domain/ports';
import type { TokenFormat } from '../domain/token';
import { Batcher, ItemFailure, type BatcherLimits } from '../domain/batcher';
import { isVaultError } from '../errors';
import { isDeadlockVictim, POOL_QUEUE_DEADLINE, type Db, type Queryable } from './db';

interface CardRow {
  tenant_id: string;
  token: string;
  format: TokenFormat;
  status: CardStatus;
  fingerprint: string | null;
  fingerprint_even: string | null;
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
  'tenant_id, token, format, status, fingerprint, fingerprint_even, brand, bin, last4, exp_month, exp_year, data_key_id, iv, tag, ciphertext, ' +
  'created_at, updated_at, version, contact_cardholder, updater_enrolled_at, updater_consent_ref, last_inquired_at, closed_at, merged_into';

export function toCardRecord(row: CardRow): CardRecord {
  return {
    tenantId: row.tenant_id,
    token: row.token,
    format: row.format,
    status: row.status,
    fingerprints: { odd: row.fingerprint, even: row.fingerprint_even },
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

/** The column holding fingerprints of generations of this parity (migrations/0012). */
export const FINGERPRINT_COLUMN: Record<Parity, 'fingerprint' | 'fingerprint_even'> = { odd: 'fingerprint', even: 'fingerprint_even' };

const first = (rows: CardRow[]) => (rows[0] ? toCardRecord(rows[0]) : undefined);

const cardKey = (tenantId: string, token: string) => `${tenantId}\u0000${token}`;

/** An idempotency claim by its tenant and digests: how a batch is ordered, and how its answers are matched. */
const claimKey = (tenantId: string, odd: string | null, even: string | null) => `${tenantId}\u0000${odd ?? ''}\u0000${even ?? ''}`;

const INSERT_COLUMNS =
  'tenant_id, token, format, fingerprint, fingerprint_even, brand, bin, last4, exp_month, exp_year, data_key_id, iv, tag, ciphertext';

function insertValues(card: NewCard): unknown[] {
  return [
    card.tenantId, card.token, card.format, card.fingerprints.odd, card.fingerprints.even, card.brand, card.bin, card.last4,
    card.expMonth, card.expYear, card.sealed.dataKeyId, card.sealed.iv, card.sealed.tag, card.sealed.ciphertext,
  ];
}

/**
 * A keyed tokenize running alone claims its key, then inserts its card; a batch inserts its cards, then claims
 * their keys. Two such transactions of two instances racing on one key and one number can deadlock (one
 * process's batcher keeps its own apart): PostgreSQL ends one, which runs again and meets the other's rows.
 */
const MAX_TRANSACTION_ATTEMPTS = 3;

/** Coalescing on the pool: a busy process makes one statement for many concurrent lookups or inserts. */
export const CARD_BATCH_LIMITS: BatcherLimits = { maxBatch: 64, maxInFlight: 4, queueDeadline: POOL_QUEUE_DEADLINE };

export class PgCardStore implements CardStore {
  readonly #lookups?: Batcher<{ tenantId: string; token: string }, CardRecord | undefined>;
  readonly #inserts?: Batcher<NewCard, CardRecord | undefined>;

  /**
   * `db` given: this store runs on the pool, and coalesces concurrent `findCard` and `insertCard` calls (each
   * answered exactly as its own statement would be). Inside a transaction every call is its own statement.
   */
  constructor(
    private readonly q: Queryable,
    private readonly db?: Db,
    batchLimits: BatcherLimits | undefined = db ? CARD_BATCH_LIMITS : undefined,
  ) {
    if (batchLimits) {
      this.#lookups = new Batcher((keys) => this.findCards(keys), batchLimits);
      // Two new cards with one token or one number never share a statement: each must learn of its own conflict.
      this.#inserts = new Batcher((cards) => this.insertBatch(cards), batchLimits, (card) => [
        `t:${cardKey(card.tenantId, card.token)}`,
        ...(['odd', 'even'] as const).flatMap((parity) => {
          const value = card.fingerprints[parity];
          return value ? [`${parity}:${cardKey(card.tenantId, value)}`] : [];
        }),
      ]);
    }
  }

  async transaction<T>(fn: (tx: CardStore) => Promise<T>): Promise<T> {
    const db = this.db;
    if (!db) throw new Error('nested transactions are not supported');
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await db.transaction((tx) => fn(new PgCardStore(tx)));
      } catch (err) {
        if (attempt === MAX_TRANSACTION_ATTEMPTS || !isDeadlockVictim(err)) throw err;
      }
    }
  }

  async insertCard(card: NewCard): Promise<CardRecord | undefined> {
    if (this.#inserts) return this.#inserts.submit(card);
    return this.insertOne(card);
  }

  private async insertOne(card: NewCard): Promise<CardRecord | undefined> {
    const rows = await this.q.query<CardRow>(
      `INSERT INTO cards (${INSERT_COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       ON CONFLICT DO NOTHING
       RETURNING ${CARD_COLUMNS}`,
      insertValues(card),
    );
    return first(rows);
  }

  async insertCards(cards: NewCard[]): Promise<(CardRecord | undefined)[]> {
    if (cards.length <= 1) return Promise.all(cards.map((card) => this.insertOne(card)));
    const columns: unknown[][] = Array.from({ length: 14 }, () => []);
    for (const card of cards) insertValues(card).forEach((value, i) => columns[i]!.push(value));
    const rows = await this.q.query<CardRow>(
      `INSERT INTO cards (${INSERT_COLUMNS})
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::smallint[], $10::smallint[], $11::uuid[], $12::bytea[], $13::bytea[], $14::bytea[])
       ON CONFLICT DO NOTHING
       RETURNING ${CARD_COLUMNS}`,
      columns,
    );
    const inserted = new Map(rows.map((row) => [cardKey(row.tenant_id, row.token), row]));
    // A row is a card's own only with its number too: two cards that drew one token must not share its row.
    return cards.map((card) => {
      const row = inserted.get(cardKey(card.tenantId, card.token));
      return row && row.fingerprint === card.fingerprints.odd && row.fingerprint_even === card.fingerprints.even ? toCardRecord(row) : undefined;
    });
  }

  /**
   * The pool's batches: one autocommit statement. Should it fail for a reason other than the database being
   * away, each card is retried alone so one bad row cannot fail the others. A deadlock is such a reason: another
   * instance's batch held two of these numbers in the other order, and alone each card meets its committed rows.
   */
  private async insertBatch(cards: NewCard[]): Promise<(CardRecord | undefined | ItemFailure)[]> {
    if (cards.length === 1) return [await this.insertOne(cards[0]!)];
    try {
      return await this.insertCards(cards);
    } catch (err) {
      if (isVaultError(err) && err.code === 'database_unavailable' && !isDeadlockVictim(err)) throw err;
      return Promise.all(cards.map((card) => this.insertOne(card).catch((cardErr: unknown) => new ItemFailure(cardErr))));
    }
  }

  async findCardByFingerprint(tenantId: string, fingerprint: { parity: Parity; value: string }): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND ${FINGERPRINT_COLUMN[fingerprint.parity]} = $2 AND status IN ('active', 'closed')`,
        [tenantId, fingerprint.value],
      ),
    );
  }

  async findCard(tenantId: string, token: string): Promise<CardRecord | undefined> {
    if (this.#lookups) return this.#lookups.submit({ tenantId, token });
    return (await this.findCards([{ tenantId, token }]))[0];
  }

  private async findCards(keys: { tenantId: string; token: string }[]): Promise<(CardRecord | undefined)[]> {
    if (keys.length === 1) {
      const { tenantId, token } = keys[0]!;
      return [
        first(
          await this.q.query<CardRow>(
            `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND token = $2 AND status <> 'deleted'`,
            [tenantId, token],
          ),
        ),
      ];
    }
    const rows = await this.q.query<CardRow>(
      `SELECT ${CARD_COLUMNS.replace(/(^|, )/g, '$1c.')}
       FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, token)
       JOIN cards c ON c.tenant_id = k.tenant_id AND c.token = k.token
       WHERE c.status <> 'deleted'`,
      [keys.map((k) => k.tenantId), keys.map((k) => k.token)],
    );
    const found = new Map(rows.map((row) => [cardKey(row.tenant_id, row.token), row]));
    return keys.map(({ tenantId, token }) => {
      const row = found.get(cardKey(tenantId, token));
      return row ? toCardRecord(row) : undefined;
    });
  }

  async extendExpiry(tenantId: string, token: string, expMonth: number, expYear: number): Promise<CardRecord | undefined> {
    return first(
      await this.q.query<CardRow>(
        `UPDATE cards SET exp_month = $3, exp_year = $4, version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND token = $2 AND status = 'active' AND (exp_year, exp_month) < ($4::smallint, $3::smallint)
         RETURNING ${CARD_COLUMNS}`,
        [tenantId, token, expMonth, expYear],
      ),
    );
  }

  async updateCard(
    tenantId: string,
    token: string,
    changes: { expMonth?: number; expYear?: number; sealed?: { card: SealedCard; replaces: SealedCard } },
  ): Promise<CardRecord | 'stale' | undefined> {
    const s = changes.sealed?.card;
    const was = changes.sealed?.replaces;
    // Every seal draws a fresh IV, so the key id and IV name the ciphertext the new one was made from. A row
    // re-sealed meanwhile (or locked to be, then committed) no longer matches and is not written. A new expiry
    // is a new version: an account updater answer about the card as it was must not move it back.
    const updated = first(
      await this.q.query<CardRow>(
        `UPDATE cards SET
           version = version + CASE WHEN (COALESCE($3, exp_month), COALESCE($4, exp_year)) IS DISTINCT FROM (exp_month, exp_year) THEN 1 ELSE 0 END,
           exp_month = COALESCE($3, exp_month), exp_year = COALESCE($4, exp_year),
           data_key_id = COALESCE($5, data_key_id), iv = COALESCE($6, iv), tag = COALESCE($7, tag),
           ciphertext = COALESCE($8, ciphertext), updated_at = now()
         WHERE tenant_id = $1 AND token = $2 AND status = 'active' AND ($9::uuid IS NULL OR (data_key_id = $9 AND iv = $10))
         RETURNING ${CARD_COLUMNS}`,
        [tenantId, token, changes.expMonth ?? null, changes.expYear ?? null, s?.dataKeyId ?? null, s?.iv ?? null, s?.tag ?? null, s?.ciphertext ?? null, was?.dataKeyId ?? null, was?.iv ?? null],
      ),
    );
    if (updated || !was) return updated;
    return (await this.findCard(tenantId, token))?.status === 'active' ? 'stale' : undefined;
  }

  async destroyCard(tenantId: string, token: string): Promise<boolean> {
    // One statement, so no replay can read a response of a card already deleted (migrations/0021 indexes them).
    const rows = await this.q.query(
      `WITH destroyed AS (
         UPDATE cards SET status = 'deleted', fingerprint = NULL, fingerprint_even = NULL, data_key_id = NULL, iv = NULL, tag = NULL,
                          ciphertext = NULL, merged_into = NULL, updater_enrolled_at = NULL, deleted_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND token = $2 AND status <> 'deleted'
         RETURNING token
       ), redacted AS (
         UPDATE idempotency_keys SET response = $3
         WHERE tenant_id = $1 AND response -> 'card' ->> 'token' = $2 AND EXISTS (SELECT 1 FROM destroyed)
       )
       SELECT token FROM destroyed`,
      [tenantId, token, JSON.stringify(DELETED_CARD_RESPONSE)],
    );
    return rows.length === 1;
  }

  async claimIdempotencyKey(
    tenantId: string,
    key: IdempotencyKeyDigests,
    requestDigest: RequestDigest,
    ttlSeconds: number,
  ): Promise<{ claimed: true; id: string } | { claimed: false; record: IdempotencyRecord }> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      // A concurrent claim of the same key blocks here until the first transaction ends, then conflicts with its row.
      const claimed = await this.q.query<{ id: string }>(
        `INSERT INTO idempotency_keys (tenant_id, key_digest_odd, key_digest_even, request_digest, digest_generation, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
         ON CONFLICT DO NOTHING
         RETURNING id`,
        [tenantId, key.odd, key.even, requestDigest.digest, requestDigest.generation, ttlSeconds],
      );
      if (claimed.length === 1) return { claimed: true, id: claimed[0]!.id };
      const rows = await this.q.query<{ id: string; request_digest: string; digest_generation: number; response: unknown; expired: boolean }>(
        `SELECT id, request_digest, digest_generation, response, expires_at < now() AS expired
           FROM idempotency_keys WHERE tenant_id = $1 AND (key_digest_odd = $2 OR key_digest_even = $3)`,
        [tenantId, key.odd, key.even],
      );
      const live = rows.find((row) => !row.expired);
      if (live) return { claimed: false, record: { requestDigest: { generation: live.digest_generation, digest: live.request_digest }, response: live.response } };
      // Only expired records hold the key: taken over, by removing them and claiming again.
      await this.q.query('DELETE FROM idempotency_keys WHERE id = ANY($1::bigint[]) AND expires_at < now()', [rows.map((row) => row.id)]);
    }
    throw new Error('an idempotency record kept expiring while it was claimed');
  }

  async completeIdempotencyKey(id: string, response: unknown): Promise<void> {
    await this.q.query('UPDATE idempotency_keys SET response = $2 WHERE id = $1', [id, JSON.stringify(response)]);
  }

  async claimIdempotencyKeys(
    claims: { tenantId: string; key: IdempotencyKeyDigests; requestDigest: RequestDigest; response: unknown }[],
    ttlSeconds: number,
  ): Promise<boolean[]> {
    if (claims.length === 0) return [];
    // In one order: two batches claiming the same keys wait on each other, never in a cycle. A claim meeting a
    // concurrent one's uncommitted row waits here until that transaction ends, then conflicts with the row.
    const keys = claims.map((c) => claimKey(c.tenantId, c.key.odd, c.key.even));
    const ordered = claims.map((_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0)).map((i) => claims[i]!);
    const rows = await this.q.query<{ tenant_id: string; key_digest_odd: string | null; key_digest_even: string | null }>(
      `INSERT INTO idempotency_keys (tenant_id, key_digest_odd, key_digest_even, request_digest, digest_generation, response, expires_at)
       SELECT tenant_id, key_digest_odd, key_digest_even, request_digest, digest_generation, response, now() + make_interval(secs => $7)
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::jsonb[])
              AS c(tenant_id, key_digest_odd, key_digest_even, request_digest, digest_generation, response)
       ON CONFLICT DO NOTHING
       RETURNING tenant_id, key_digest_odd, key_digest_even`,
      [
        ordered.map((c) => c.tenantId),
        ordered.map((c) => c.key.odd),
        ordered.map((c) => c.key.even),
        ordered.map((c) => c.requestDigest.digest),
        ordered.map((c) => c.requestDigest.generation),
        ordered.map((c) => JSON.stringify(c.response)),
        ttlSeconds,
      ],
    );
    const claimed = new Set(rows.map((row) => claimKey(row.tenant_id, row.key_digest_odd, row.key_digest_even)));
    return keys.map((key) => claimed.has(key));
  }
}

/**
 * Removes idempotency records past their retention, `batchSize` at a time along the expiry index; run periodically.
 * One statement for a backlog (after an outage, a burst of keyed traffic) could outlast the statement timeout, and
 * then every later run would too: the table would never shrink, and stored responses outlive their 24 h (SECURITY.md).
 */
export async function purgeExpiredIdempotencyKeys(db: Queryable, batchSize = 5000): Promise<number> {
  let purged = 0;
  for (;;) {
    const rows = await db.query(
      `DELETE FROM idempotency_keys WHERE id IN (SELECT id FROM idempotency_keys WHERE expires_at < now() ORDER BY expires_at LIMIT $1)
       RETURNING id`,
      [batchSize],
    );
    purged += rows.length;
    if (rows.length < batchSize) return purged;
  }
}

/**
 * Replaces the plaintext key of records written before migration 0013 (or by the previous release during a
 * rolling deploy) with its digests under the generation that keyed the record, which stays live while the
 * record is unexpired (the fingerprint rotation waits for it). Expired ones are left to
 * purgeExpiredIdempotencyKeys, run just before. Any instance may run it, concurrently with others; each row is
 * changed only while it still holds a key.
 */
export async function digestLegacyIdempotencyKeys(
  db: Queryable,
  digest: (tenantId: string, key: string, generation: number) => Promise<IdempotencyKeyDigests>,
  batchSize = 500,
): Promise<{ digested: number; failed: number }> {
  let digested = 0;
  let failed = 0;
  let after = '0';
  for (;;) {
    const rows = await db.query<{ id: string; tenant_id: string; key: string; digest_generation: number }>(
      `SELECT id, tenant_id, key, digest_generation FROM idempotency_keys
        WHERE key IS NOT NULL AND expires_at >= now() AND id > $1 ORDER BY id LIMIT $2`,
      [after, batchSize],
    );
    if (rows.length === 0) return { digested, failed };
    for (const row of rows) {
      after = row.id;
      let digests: IdempotencyKeyDigests;
      try {
        digests = await digest(row.tenant_id, row.key, row.digest_generation);
      } catch {
        failed += 1; // Its key unreadable now (the KMS down): left for the next pass.
        continue;
      }
      try {
        const updated = await db.query(
          'UPDATE idempotency_keys SET key = NULL, key_digest_odd = $2, key_digest_even = $3 WHERE id = $1 AND key IS NOT NULL RETURNING id',
          [row.id, digests.odd, digests.even],
        );
        digested += updated.length;
      } catch (err) {
        if ((err as { code?: unknown }).code !== '23505') throw err;
        // A record by digest exists for this key already (claimed by an instance that could not see this one):
        // that one answers retries from now on, and the plaintext goes.
        await db.query('DELETE FROM idempotency_keys WHERE id = $1 AND key IS NOT NULL', [row.id]);
        digested += 1;
      }
    }
  }
}
