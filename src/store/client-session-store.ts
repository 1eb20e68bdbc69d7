// Client sessions in PostgreSQL: inserted once, consumed at most once by a single conditional UPDATE.
import type { ClientSessionRecord, ClientSessionStore } from '../domain/client-sessions';
import type { Queryable } from './db';
import { isUuid } from '../domain/uuid';

interface Row {
  id: string;
  tenant_id: string;
  created_by: string;
  allowed_origins: string[];
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
  token: string | null;
}

const COLUMNS = 'id, tenant_id, created_by, allowed_origins, created_at, expires_at, used_at, token';
/** Whether the API key that created session `s` has been revoked: one test for consume and for serving the form. */
const CREATOR_REVOKED = 'EXISTS (SELECT 1 FROM api_keys k WHERE k.id::text = s.created_by AND k.revoked_at IS NOT NULL)';

const toRecord = (r: Row): ClientSessionRecord => ({
  id: r.id,
  tenantId: r.tenant_id,
  createdBy: r.created_by,
  allowedOrigins: r.allowed_origins,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  usedAt: r.used_at,
  token: r.token,
});

export class PgClientSessionStore implements ClientSessionStore {
  constructor(private readonly q: Queryable) {}

  async insert(session: Omit<ClientSessionRecord, 'usedAt' | 'token'>): Promise<ClientSessionRecord> {
    const rows = await this.q.query<Row>(
      `INSERT INTO client_sessions (id, tenant_id, created_by, allowed_origins, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [session.id, session.tenantId, session.createdBy, session.allowedOrigins, session.createdAt, session.expiresAt],
    );
    return toRecord(rows[0]!);
  }

  /**
   * One statement decides: of two concurrent redemptions the row lock lets one through, and the other then
   * sees used_at set. Expiry is judged by the database's clock, the same for every instance.
   */
  async consume(id: string, tenantId: string): Promise<ClientSessionRecord | undefined> {
    if (!isUuid(id) || !isUuid(tenantId)) return undefined;
    const rows = await this.q.query<Row>(
      `UPDATE client_sessions s SET used_at = now()
       WHERE s.id = $1 AND s.tenant_id = $2 AND s.used_at IS NULL AND s.expires_at > now()
         AND NOT ${CREATOR_REVOKED}
       RETURNING ${COLUMNS}`,
      [id, tenantId],
    );
    return rows[0] && toRecord(rows[0]);
  }

  async find(id: string): Promise<ClientSessionRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const rows = await this.q.query<Row>(`SELECT ${COLUMNS} FROM client_sessions WHERE id = $1`, [id]);
    return rows[0] && toRecord(rows[0]);
  }

  /** The session with the same test consume makes of its creating key, in one statement, without using it up. */
  async findWithCreator(id: string): Promise<(ClientSessionRecord & { creatorRevoked: boolean }) | undefined> {
    if (!isUuid(id)) return undefined;
    const rows = await this.q.query<Row & { creator_revoked: boolean }>(
      `SELECT ${COLUMNS},
              ${CREATOR_REVOKED} AS creator_revoked
       FROM client_sessions s WHERE s.id = $1`,
      [id],
    );
    return rows[0] && { ...toRecord(rows[0]), creatorRevoked: rows[0].creator_revoked };
  }

  async recordToken(id: string, token: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const rows = await this.q.query<{ id: string }>(
      'UPDATE client_sessions SET token = $2 WHERE id = $1 AND used_at IS NOT NULL AND token IS NULL RETURNING id',
      [id, token],
    );
    return rows.length === 1;
  }
}
