// KMS key rotations and the rows they touch: every wrapped key in the schema, and cards sealed before a rotation.
import type { KeyContext, SealedCard, WrappedKey } from '../domain/ports';
import type { Db, Queryable } from './db';

export interface KeyRotation {
  generation: number;
  kmsKeyId: string;
  /** `aborted`: stopped before any key was re-wrapped; instances use the KMS key of the latest rotation not aborted. */
  state: 'rewrapping' | 'reencrypting' | 'completed' | 'aborted';
  reencryptCards: boolean;
  rewrapped: number;
  reencrypted: number;
  startedAt: Date;
  finishedAt: Date | null;
}

interface RotationRow {
  generation: string;
  kms_key_id: string;
  state: KeyRotation['state'];
  reencrypt_cards: boolean;
  rewrapped: number;
  reencrypted: number;
  started_at: Date;
  finished_at: Date | null;
}

const toRotation = (r: RotationRow): KeyRotation => ({
  generation: Number(r.generation),
  kmsKeyId: r.kms_key_id,
  state: r.state,
  reencryptCards: r.reencrypt_cards,
  rewrapped: r.rewrapped,
  reencrypted: r.reencrypted,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
});

/** A wrapped key somewhere in the schema, with the KMS context it was wrapped under. */
export interface WrappedRow {
  table: WrappedTable;
  id: string;
  context: KeyContext;
  wrapped: WrappedKey;
}

/**
 * Each table holding KMS-wrapped keys: its key column and that column's type, its wrapped columns, and the context
 * its rows use. A row is replaced by its key column compared as its own type, so through the primary key: cast to
 * text it would be a scan of the table per key, and data_keys only grows.
 */
const WRAPPED_TABLES = {
  data_keys: { id: 'id', idType: 'uuid', kmsKeyId: 'kms_key_id', wrapped: 'wrapped', context: "tenant_id::text AS tenant, 'card-data' AS purpose" },
  fingerprint_keys: { id: 'id', idType: 'uuid', kmsKeyId: 'kms_key_id', wrapped: 'key_wrapped', context: "tenant_id::text AS tenant, 'fingerprint' AS purpose" },
  // Legacy copies of generation-1 fingerprint keys (migrations/0012); null (and so skipped) once destroyed.
  tenants: { id: 'id', idType: 'uuid', kmsKeyId: 'fingerprint_kms_key_id', wrapped: 'fingerprint_key_wrapped', context: "id::text AS tenant, 'fingerprint' AS purpose" },
  signing_keys: { id: 'kid', idType: 'text', kmsKeyId: 'kms_key_id', wrapped: 'wrapped_key', context: "'system' AS tenant, 'signing' AS purpose" },
  encryption_keys: { id: 'kid', idType: 'text', kmsKeyId: 'kms_key_id', wrapped: 'wrapped_key', context: "'system' AS tenant, 'client-encryption' AS purpose" },
} as const;
export type WrappedTable = keyof typeof WRAPPED_TABLES;
export const WRAPPED_TABLE_NAMES = Object.keys(WRAPPED_TABLES) as WrappedTable[];

const ROTATION_COLUMNS = 'generation, kms_key_id, state, reencrypt_cards, rewrapped, reencrypted, started_at, finished_at';

/**
 * A card's data key `d` was generated before the rotation ($1 its KMS key, $2 its start): under another KMS key, also
 * after the start by an instance that had not yet taken the rotation up; or, for a key from before migrations/0018
 * (which does not know its generating key), created before the start.
 */
const GENERATED_BEFORE = '(d.generated_under <> $1 OR (d.generated_under IS NULL AND d.created_at < $2))';

export interface SealedCardRow {
  /** cards.id: where the next batch starts. */
  id: string;
  tenantId: string;
  token: string;
  sealed: SealedCard;
}

/** A re-wrap batch found its rotation no longer re-wrapping: aborted (keys rotate --abort), or moved on by another run. */
export class RotationAbortedError extends Error {
  constructor(readonly generation: number) {
    super(`key rotation ${generation} is no longer re-wrapping (aborted?); nothing more was re-wrapped`);
  }
}

export interface SealedSecretRow {
  /** webhook_endpoints.id: the secret's AAD, and where the next batch starts. */
  id: string;
  tenantId: string;
  sealed: SealedCard;
}

export class PgKeyRotationStore {
  constructor(private readonly db: Db) {}

  /** The latest rotation not aborted: its KMS key wraps new keys (none: the configured key). */
  async latest(): Promise<KeyRotation | undefined> {
    const rows = await this.db.query<RotationRow>(
      `SELECT ${ROTATION_COLUMNS} FROM key_rotations WHERE state <> 'aborted' ORDER BY generation DESC LIMIT 1`,
    );
    return rows[0] && toRotation(rows[0]);
  }

  /** The rotation in progress, if any. */
  async open(): Promise<KeyRotation | undefined> {
    const rows = await this.db.query<RotationRow>(`SELECT ${ROTATION_COLUMNS} FROM key_rotations WHERE state NOT IN ('completed', 'aborted')`);
    return rows[0] && toRotation(rows[0]);
  }

  /**
   * Aborts the rotation in progress if it has re-wrapped nothing yet, committed together with what `record` writes
   * in its transaction (its audit event); undefined when there is none such. A re-wrap batch holds the row (see
   * replaceWrapped), so an abort and a batch never overlap: one of them finds the other done.
   */
  async abort(record: (tx: Queryable, rotation: KeyRotation) => Promise<void>): Promise<KeyRotation | undefined> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<RotationRow>(
        `UPDATE key_rotations SET state = 'aborted', finished_at = now() WHERE state = 'rewrapping' AND rewrapped = 0 RETURNING ${ROTATION_COLUMNS}`,
      );
      if (!rows[0]) return undefined;
      const rotation = toRotation(rows[0]);
      await record(tx, rotation);
      return rotation;
    });
  }

  /**
   * A new generation, unless one is still in progress (then that one: resume it). A new one is committed together
   * with what `record` writes in its transaction (its audit event): a crash leaves both or neither.
   */
  async start(
    kmsKeyId: string,
    reencryptCards: boolean,
    record: (tx: Queryable, begun: KeyRotation) => Promise<void>,
  ): Promise<{ rotation: KeyRotation; created: boolean }> {
    const begun = await this.db.transaction(async (tx) => {
      const rows = await tx.query<RotationRow>(
        `INSERT INTO key_rotations (generation, kms_key_id, state, reencrypt_cards)
         SELECT COALESCE(max(generation), 0) + 1, $1, 'rewrapping', $2 FROM key_rotations
         ON CONFLICT DO NOTHING RETURNING ${ROTATION_COLUMNS}`,
        [kmsKeyId, reencryptCards],
      );
      if (!rows[0]) return undefined;
      const rotation = toRotation(rows[0]);
      await record(tx, rotation);
      return rotation;
    });
    if (begun) return { rotation: begun, created: true };
    const open = await this.open();
    if (!open) throw new Error('a rotation finished while another was being started; run the command again');
    return { rotation: open, created: false };
  }

  /** Milliseconds since the rotation started (or, `finished`, ended), by the database's clock (the one that set it). */
  async sinceStartMs(generation: number, since: 'started' | 'finished' = 'started'): Promise<number> {
    const rows = await this.db.query<{ since_ms: number }>(
      `SELECT (extract(epoch FROM now() - ${since === 'started' ? 'started_at' : 'finished_at'}) * 1000)::float8 AS since_ms
       FROM key_rotations WHERE generation = $1`,
      [generation],
    );
    if (!rows[0]) throw new Error(`no key rotation of generation ${generation}`);
    return rows[0].since_ms;
  }

  /**
   * Moves the rotation from state `from` to `to`, committed together with what `record` writes in its transaction
   * (its audit events), given the rotation as it now is. Throws if it was not in `from` (another run moved it).
   */
  async advance(
    generation: number,
    from: KeyRotation['state'],
    to: KeyRotation['state'],
    record: (tx: Queryable, rotation: KeyRotation) => Promise<void>,
  ): Promise<KeyRotation> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<RotationRow>(
        `UPDATE key_rotations SET state = $3, finished_at = CASE WHEN $3 = 'completed' THEN now() ELSE NULL END
         WHERE generation = $1 AND state = $2 RETURNING ${ROTATION_COLUMNS}`,
        [generation, from, to],
      );
      if (!rows[0]) throw new Error(`key rotation ${generation} changed meanwhile (another keys rotate?); run the command again`);
      const rotation = toRotation(rows[0]);
      await record(tx, rotation);
      return rotation;
    });
  }

  /**
   * An open rotation re-seals cards too (resumed with --reencrypt-cards, begun without), with `record`'s audit event
   * in the same transaction: an operator's change to a key rotation is never left unrecorded.
   */
  async requireReencryption(generation: number, record: (tx: Queryable) => Promise<void>): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.query(
        `UPDATE key_rotations SET reencrypt_cards = true WHERE generation = $1 AND state NOT IN ('completed', 'aborted') AND NOT reencrypt_cards RETURNING generation`,
        [generation],
      );
      if (rows.length === 1) await record(tx);
    });
  }

  async addProgress(generation: number, progress: { rewrapped?: number; reencrypted?: number }): Promise<void> {
    await this.db.query('UPDATE key_rotations SET rewrapped = rewrapped + $2, reencrypted = reencrypted + $3 WHERE generation = $1', [
      generation, progress.rewrapped ?? 0, progress.reencrypted ?? 0,
    ]);
  }

  /** How many wrapped keys are not yet under `kmsKeyId`, in every table. */
  async countNotWrappedUnder(kmsKeyId: string): Promise<number> {
    let total = 0;
    for (const [table, t] of Object.entries(WRAPPED_TABLES)) {
      const rows = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${t.kmsKeyId} <> $1`, [kmsKeyId]);
      total += rows[0]!.n;
    }
    return total;
  }

  /**
   * The next `limit` keys not yet under `kmsKeyId`, in key order after `afterId` (the last of the previous batch): read
   * along the primary key, so a batch does not scan again every key the batches before it re-wrapped.
   */
  async notWrappedUnder(table: WrappedTable, kmsKeyId: string, limit: number, afterId?: string): Promise<WrappedRow[]> {
    const t = WRAPPED_TABLES[table];
    const rows = await this.db.query<{ id: string; kms_key_id: string; wrapped: Buffer; tenant: string; purpose: KeyContext['purpose'] }>(
      `SELECT ${t.id}::text AS id, ${t.kmsKeyId} AS kms_key_id, ${t.wrapped} AS wrapped, ${t.context}
       FROM ${table} WHERE ${t.kmsKeyId} <> $1 AND ($3::${t.idType} IS NULL OR ${t.id} > $3::${t.idType}) ORDER BY ${table}.${t.id} LIMIT $2`,
      [kmsKeyId, limit, afterId ?? null],
    );
    return rows.map((r) => ({ table, id: r.id, context: { tenantId: r.tenant, purpose: r.purpose }, wrapped: { kmsKeyId: r.kms_key_id, ciphertext: r.wrapped } }));
  }

  /**
   * Replaces a batch of wrapped keys, each only if it is still the one read (a concurrent rotation or write wins, and
   * is read again), and counts them as the rotation's progress, in one transaction that first locks the rotation's
   * row and checks that it is still re-wrapping: an abort waits for the batch (and then finds keys re-wrapped), or
   * the batch finds the rotation aborted and replaces nothing (RotationAbortedError).
   */
  async replaceWrapped(generation: number, batch: ReadonlyArray<{ row: WrappedRow; rewrapped: WrappedKey }>): Promise<number> {
    return this.db.transaction(async (tx) => {
      const open = await tx.query(`SELECT 1 FROM key_rotations WHERE generation = $1 AND state = 'rewrapping' FOR UPDATE`, [generation]);
      if (open.length === 0) throw new RotationAbortedError(generation);
      let replaced = 0;
      for (const { row, rewrapped } of batch) {
        const t = WRAPPED_TABLES[row.table];
        const updated = await tx.query(
          `UPDATE ${row.table} SET ${t.kmsKeyId} = $2, ${t.wrapped} = $3 WHERE ${t.id} = $1::${t.idType} AND ${t.kmsKeyId} = $4 AND ${t.wrapped} = $5 RETURNING 1`,
          [row.id, rewrapped.kmsKeyId, rewrapped.ciphertext, row.wrapped.kmsKeyId, row.wrapped.ciphertext],
        );
        replaced += updated.length;
      }
      await tx.query('UPDATE key_rotations SET rewrapped = rewrapped + $2 WHERE generation = $1', [generation, replaced]);
      return replaced;
    });
  }

  /** How many wrapped keys, in every table, are under `kmsKeyId`. */
  async countWrappedUnder(kmsKeyId: string): Promise<number> {
    let total = 0;
    for (const [table, t] of Object.entries(WRAPPED_TABLES)) {
      const rows = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${t.kmsKeyId} = $1`, [kmsKeyId]);
      total += rows[0]!.n;
    }
    return total;
  }

  /** Cards still sealed under a data key made before `since` (the rotation's start). */
  async countSealedBefore(rotation: Pick<KeyRotation, 'kmsKeyId' | 'startedAt'>): Promise<number> {
    const rows = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cards c JOIN data_keys d ON d.id = c.data_key_id WHERE ${GENERATED_BEFORE}`,
      [rotation.kmsKeyId, rotation.startedAt],
    );
    return rows[0]!.n;
  }

  /**
   * The next `limit` of those cards, in id order after `afterId` (the last of the previous batch): read along the
   * primary key, so a batch does not scan again every card the batches before it re-sealed.
   */
  async sealedBefore(rotation: Pick<KeyRotation, 'kmsKeyId' | 'startedAt'>, limit: number, afterId?: string): Promise<SealedCardRow[]> {
    const rows = await this.db.query<{ id: string; tenant_id: string; token: string; data_key_id: string; iv: Buffer; tag: Buffer; ciphertext: Buffer }>(
      `SELECT c.id::text AS id, c.tenant_id, c.token, c.data_key_id, c.iv, c.tag, c.ciphertext FROM cards c JOIN data_keys d ON d.id = c.data_key_id
       WHERE ${GENERATED_BEFORE} AND ($4::bigint IS NULL OR c.id > $4::bigint) ORDER BY c.id LIMIT $3`,
      [rotation.kmsKeyId, rotation.startedAt, limit, afterId ?? null],
    );
    return rows.map((r) => ({
      id: r.id, tenantId: r.tenant_id, token: r.token, sealed: { dataKeyId: r.data_key_id, iv: r.iv, tag: r.tag, ciphertext: r.ciphertext },
    }));
  }

  /** Webhook signing secrets (of every endpoint, disabled too) still sealed under a data key made before the rotation. */
  async countSecretsSealedBefore(rotation: Pick<KeyRotation, 'kmsKeyId' | 'startedAt'>): Promise<number> {
    const rows = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM webhook_endpoints w JOIN data_keys d ON d.id = w.data_key_id WHERE ${GENERATED_BEFORE}`,
      [rotation.kmsKeyId, rotation.startedAt],
    );
    return rows[0]!.n;
  }

  /** The next `limit` of those secrets, in endpoint id order after `afterId` (the last of the previous batch). */
  async secretsSealedBefore(rotation: Pick<KeyRotation, 'kmsKeyId' | 'startedAt'>, limit: number, afterId?: string): Promise<SealedSecretRow[]> {
    const rows = await this.db.query<{ id: string; tenant_id: string; data_key_id: string; iv: Buffer; tag: Buffer; secret_ciphertext: Buffer }>(
      `SELECT w.id, w.tenant_id, w.data_key_id, w.iv, w.tag, w.secret_ciphertext FROM webhook_endpoints w JOIN data_keys d ON d.id = w.data_key_id
       WHERE ${GENERATED_BEFORE} AND ($4::uuid IS NULL OR w.id > $4::uuid) ORDER BY w.id LIMIT $3`,
      [rotation.kmsKeyId, rotation.startedAt, limit, afterId ?? null],
    );
    return rows.map((r) => ({
      id: r.id, tenantId: r.tenant_id, sealed: { dataKeyId: r.data_key_id, iv: r.iv, tag: r.tag, ciphertext: r.secret_ciphertext },
    }));
  }

  /** Swaps in the re-sealed secret unless it changed meanwhile: then it is read again. */
  async replaceSealedSecret(secret: SealedSecretRow, resealed: SealedCard): Promise<boolean> {
    const updated = await this.db.query(
      `UPDATE webhook_endpoints SET data_key_id = $3, iv = $4, tag = $5, secret_ciphertext = $6
       WHERE id = $1 AND tenant_id = $2 AND data_key_id = $7 AND iv = $8 RETURNING 1`,
      [secret.id, secret.tenantId, resealed.dataKeyId, resealed.iv, resealed.tag, resealed.ciphertext, secret.sealed.dataKeyId, secret.sealed.iv],
    );
    return updated.length === 1;
  }

  /** Swaps in the re-sealed card unless it changed meanwhile (an update, a delete): then it is simply read again. */
  async replaceSealed(card: SealedCardRow, resealed: SealedCard): Promise<boolean> {
    const updated = await this.db.query(
      `UPDATE cards SET data_key_id = $3, iv = $4, tag = $5, ciphertext = $6
       WHERE tenant_id = $1 AND token = $2 AND data_key_id = $7 AND iv = $8 RETURNING 1`,
      [card.tenantId, card.token, resealed.dataKeyId, resealed.iv, resealed.tag, resealed.ciphertext, card.sealed.dataKeyId, card.sealed.iv],
    );
    return updated.length === 1;
  }
}
