// Fingerprint-key rotations: a tenant's key states, the cards still missing a generation's fingerprint, and
// the idempotency records a generation still keys. Every card write is compare-and-swap, so the command can stop
// and resume anywhere, beside live traffic.
import type { FingerprintKeyState, Parity } from '../domain/fingerprints';
import type { SealedCard, WrappedKey } from '../domain/ports';
import { FINGERPRINT_COLUMN } from './card-store';
import type { Db } from './db';

export interface FingerprintKeyRow {
  generation: number;
  state: FingerprintKeyState;
  wrapped: WrappedKey;
  backfilled: number;
  cleared: number;
  /** Milliseconds since the state last changed, by the database's clock (the one every instance's wait is judged by). */
  sinceChangeMs: number;
}

export interface UnfingerprintedCard {
  id: string;
  token: string;
  sealed: SealedCard;
}

const isUniqueViolation = (err: unknown) => (err as { code?: unknown })?.code === '23505';

export class PgFingerprintRotationStore {
  constructor(private readonly db: Db) {}

  /** The tenant's live keys (current, and next, previous or retiring during a rotation). */
  async liveKeys(tenantId: string): Promise<FingerprintKeyRow[]> {
    const rows = await this.db.query<{
      generation: number; state: FingerprintKeyState; kms_key_id: string; key_wrapped: Buffer; backfilled: number; cleared: number; since_ms: number;
    }>(
      `SELECT generation, state, kms_key_id, key_wrapped, backfilled, cleared,
              (extract(epoch FROM now() - state_changed_at) * 1000)::float8 AS since_ms
       FROM fingerprint_keys WHERE tenant_id = $1 AND state <> 'retired' ORDER BY generation`,
      [tenantId],
    );
    return rows.map((r) => ({
      generation: r.generation, state: r.state, wrapped: { kmsKeyId: r.kms_key_id, ciphertext: r.key_wrapped },
      backfilled: r.backfilled, cleared: r.cleared, sinceChangeMs: r.since_ms,
    }));
  }

  /** Every tenant, oldest first (`--all-tenants`). */
  async tenantIds(): Promise<string[]> {
    return (await this.db.query<{ id: string }>('SELECT id FROM tenants ORDER BY created_at, id')).map((r) => r.id);
  }

  /** The next generation's key; false when another rotation of this tenant got there first. */
  async insertNext(tenantId: string, generation: number, wrapped: WrappedKey): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO fingerprint_keys (tenant_id, generation, kms_key_id, key_wrapped, state) VALUES ($1, $2, $3, $4, 'next')
       ON CONFLICT DO NOTHING RETURNING generation`,
      [tenantId, generation, wrapped.kmsKeyId, wrapped.ciphertext],
    );
    return rows.length === 1;
  }

  /** next becomes current and current previous, in one transaction (one current key per tenant at any time). */
  async switchKeys(tenantId: string, from: number, to: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      const demoted = await tx.query(
        `UPDATE fingerprint_keys SET state = 'previous', state_changed_at = now()
         WHERE tenant_id = $1 AND generation = $2 AND state = 'current' RETURNING 1`,
        [tenantId, from],
      );
      const promoted = await tx.query(
        `UPDATE fingerprint_keys SET state = 'current', state_changed_at = now()
         WHERE tenant_id = $1 AND generation = $2 AND state = 'next' RETURNING 1`,
        [tenantId, to],
      );
      if (demoted.length !== 1 || promoted.length !== 1) throw new Error('the fingerprint keys changed during the switch; run the command again');
    });
  }

  async setState(tenantId: string, generation: number, from: FingerprintKeyState, to: FingerprintKeyState): Promise<void> {
    const rows = await this.db.query(
      `UPDATE fingerprint_keys SET state = $4, state_changed_at = now() WHERE tenant_id = $1 AND generation = $2 AND state = $3 RETURNING 1`,
      [tenantId, generation, from, to],
    );
    if (rows.length !== 1) throw new Error('the fingerprint keys changed meanwhile; run the command again');
  }

  /** Destroys a retiring key (and the legacy copy of generation 1 on the tenant row). */
  async retireKey(tenantId: string, generation: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.query(
        `UPDATE fingerprint_keys SET state = 'retired', kms_key_id = NULL, key_wrapped = NULL, retired_at = now(), state_changed_at = now()
         WHERE tenant_id = $1 AND generation = $2 AND state = 'retiring' RETURNING 1`,
        [tenantId, generation],
      );
      if (rows.length !== 1) throw new Error('the fingerprint keys changed meanwhile; run the command again');
      if (generation === 1) {
        await tx.query('UPDATE tenants SET fingerprint_kms_key_id = NULL, fingerprint_key_wrapped = NULL WHERE id = $1', [tenantId]);
      }
    });
  }

  async addProgress(tenantId: string, generation: number, progress: { backfilled?: number; cleared?: number }): Promise<void> {
    await this.db.query(
      'UPDATE fingerprint_keys SET backfilled = backfilled + $3, cleared = cleared + $4 WHERE tenant_id = $1 AND generation = $2',
      [tenantId, generation, progress.backfilled ?? 0, progress.cleared ?? 0],
    );
  }

  /** Live cards with no fingerprint in this parity's column. */
  async countUnfingerprinted(tenantId: string, parity: Parity): Promise<number> {
    const rows = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1 AND status IN ('active', 'closed') AND ${FINGERPRINT_COLUMN[parity]} IS NULL`,
      [tenantId],
    );
    return rows[0]!.n;
  }

  async unfingerprinted(tenantId: string, parity: Parity, afterId: string, limit: number): Promise<UnfingerprintedCard[]> {
    const rows = await this.db.query<{ id: string; token: string; data_key_id: string; iv: Buffer; tag: Buffer; ciphertext: Buffer }>(
      `SELECT id::text, token, data_key_id, iv, tag, ciphertext FROM cards
       WHERE tenant_id = $1 AND status IN ('active', 'closed') AND ${FINGERPRINT_COLUMN[parity]} IS NULL AND id > $2
       ORDER BY id LIMIT $3`,
      [tenantId, afterId, limit],
    );
    return rows.map((r) => ({ id: r.id, token: r.token, sealed: { dataKeyId: r.data_key_id, iv: r.iv, tag: r.tag, ciphertext: r.ciphertext } }));
  }

  /**
   * Sets the fingerprint only if the column is still empty and the card still holds the ciphertext it was computed
   * from (a number change writes both columns itself; a re-seal is read again on the next pass).
   */
  async setFingerprint(tenantId: string, card: UnfingerprintedCard, parity: Parity, fingerprint: string): Promise<boolean> {
    const column = FINGERPRINT_COLUMN[parity];
    try {
      const rows = await this.db.query(
        `UPDATE cards SET ${column} = $3
         WHERE tenant_id = $1 AND id = $2 AND ${column} IS NULL AND status IN ('active', 'closed') AND iv = $4 RETURNING 1`,
        [tenantId, card.id, fingerprint, card.sealed.iv],
      );
      return rows.length === 1;
    } catch (err) {
      // The number moved to another card meanwhile (a merge): that card carries it; this one is read again.
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /**
   * Clears up to `limit` fingerprints from this parity's column, the next ones in id order after `afterId` (the last
   * of the previous batch): read along the primary key, so a batch does not walk again past every card the batches
   * before it cleared. Returns how many it cleared and the last id it read (none when it found nothing).
   */
  async clearColumn(tenantId: string, parity: Parity, limit: number, afterId?: string): Promise<{ cleared: number; lastId: string | undefined }> {
    const column = FINGERPRINT_COLUMN[parity];
    const rows = await this.db.query<{ cleared: number; last_id: string | null }>(
      `WITH picked AS (
         SELECT id FROM cards WHERE tenant_id = $1 AND ${column} IS NOT NULL AND ($3::bigint IS NULL OR id > $3::bigint) ORDER BY id LIMIT $2
       ), cleared AS (
         UPDATE cards SET ${column} = NULL WHERE id IN (SELECT id FROM picked) AND ${column} IS NOT NULL RETURNING 1
       )
       SELECT (SELECT count(*) FROM cleared)::int AS cleared, (SELECT max(id) FROM picked)::text AS last_id`,
      [tenantId, limit, afterId ?? null],
    );
    return { cleared: rows[0]!.cleared, lastId: rows[0]!.last_id ?? undefined };
  }

  async countFingerprinted(tenantId: string, parity: Parity): Promise<number> {
    const rows = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1 AND ${FINGERPRINT_COLUMN[parity]} IS NOT NULL`,
      [tenantId],
    );
    return rows[0]!.n;
  }

  async clearedOf(tenantId: string, generation: number): Promise<number> {
    const rows = await this.db.query<{ cleared: number }>('SELECT cleared FROM fingerprint_keys WHERE tenant_id = $1 AND generation = $2', [tenantId, generation]);
    return rows[0]?.cleared ?? 0;
  }

  /** Unexpired idempotency records whose digest a generation at or before this one keyed. */
  async digestsKeyedBy(tenantId: string, generation: number): Promise<{ count: number; lastExpiresAt: Date | null }> {
    const rows = await this.db.query<{ n: number; last: Date | null }>(
      `SELECT count(*)::int AS n, max(expires_at) AS last FROM idempotency_keys
       WHERE tenant_id = $1 AND digest_generation <= $2 AND expires_at >= now()`,
      [tenantId, generation],
    );
    return { count: rows[0]!.n, lastExpiresAt: rows[0]!.last };
  }
}
