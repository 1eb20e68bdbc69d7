// Tenants, API keys, wrapped data keys and the live fingerprint keys in PostgreSQL.
import type { FingerprintKeyState } from '../domain/fingerprints';
import type {
  ApiKeyRecord, DataKeyStore, FingerprintKeyStore, KeyPurpose, StoredDataKey, StoredFingerprintKey, Tenant, TenantStore, WrappedKey,
} from '../domain/ports';
import { VaultError } from '../errors';
import type { Queryable } from './db';
import { isUuid } from '../domain/uuid';

interface TenantRow {
  id: string;
  name: string;
  created_at: Date;
}

interface ApiKeyRow {
  id: string;
  tenant_id: string;
  role: string;
  label: string | null;
  created_at: Date;
  revoked_at: Date | null;
}

const toTenant = (row: TenantRow): Tenant => ({
  id: row.id,
  name: row.name,
  createdAt: row.created_at,
});

const toApiKey = (row: ApiKeyRow): ApiKeyRecord => ({
  id: row.id,
  tenantId: row.tenant_id,
  role: row.role,
  label: row.label,
  createdAt: row.created_at,
  revokedAt: row.revoked_at,
});

// tenants.fingerprint_kms_key_id and fingerprint_key_wrapped are legacy (migrations/0012): never read here.
const TENANT_COLUMNS = 'id, name, created_at';
const API_KEY_COLUMNS = 'id, tenant_id, role, label, created_at, revoked_at';

export class PgTenantStore implements TenantStore, DataKeyStore, FingerprintKeyStore {
  constructor(private readonly q: Queryable) {}

  /** The tenant and its generation-1 fingerprint key, in one statement. */
  async createTenant(id: string, name: string, fingerprintKey: WrappedKey): Promise<Tenant> {
    const rows = await this.q.query<TenantRow>(
      `WITH tenant AS (
         INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING ${TENANT_COLUMNS}
       ), fingerprint_key AS (
         INSERT INTO fingerprint_keys (tenant_id, generation, kms_key_id, key_wrapped, state) SELECT id, 1, $3, $4, 'current' FROM tenant
       )
       SELECT ${TENANT_COLUMNS} FROM tenant`,
      [id, name, fingerprintKey.kmsKeyId, fingerprintKey.ciphertext],
    );
    if (!rows[0]) throw new VaultError('tenant_exists');
    return toTenant(rows[0]);
  }

  /**
   * The tenant of this name if it is older than `olderThanMs` and has no audit event: its tenant.create, always a
   * tenant's first event (principals.ts), never committed.
   */
  async findUnauditedTenant(name: string, olderThanMs: number): Promise<Tenant | undefined> {
    const rows = await this.q.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenants t
       WHERE t.name = $1 AND t.created_at < now() - make_interval(secs => $2::double precision / 1000)
         AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.tenant_id = t.id)`,
      [name, olderThanMs],
    );
    return rows[0] && toTenant(rows[0]);
  }

  async findTenantByName(name: string): Promise<Tenant | undefined> {
    const rows = await this.q.query<TenantRow>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE name = $1`, [name]);
    return rows[0] && toTenant(rows[0]);
  }

  async findTenantById(id: string): Promise<Tenant | undefined> {
    if (!isUuid(id)) return undefined;
    const rows = await this.q.query<TenantRow>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE id = $1`, [id]);
    return rows[0] && toTenant(rows[0]);
  }

  async countTenants(): Promise<number> {
    const rows = await this.q.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants');
    return rows[0]!.n;
  }

  async insertApiKey(key: { tenantId: string; role: string; keyHash: Buffer; label: string | null }): Promise<ApiKeyRecord> {
    const rows = await this.q.query<ApiKeyRow>(
      `INSERT INTO api_keys (tenant_id, role, key_hash, label) VALUES ($1, $2, $3, $4) RETURNING ${API_KEY_COLUMNS}`,
      [key.tenantId, key.role, key.keyHash, key.label],
    );
    return toApiKey(rows[0]!);
  }

  /** Revoked keys too, so that their use is audited against them; the caller refuses them (domain/principals.ts). */
  async findApiKey(keyHash: Buffer): Promise<{ key: ApiKeyRecord; tenant: Tenant } | undefined> {
    const rows = await this.q.query<ApiKeyRow & { t_name: string; t_created: Date }>(
      `SELECT k.id, k.tenant_id, k.role, k.label, k.created_at, k.revoked_at, t.name AS t_name, t.created_at AS t_created
       FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
       WHERE k.key_hash = $1`,
      [keyHash],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      key: toApiKey(row),
      tenant: toTenant({ id: row.tenant_id, name: row.t_name, created_at: row.t_created }),
    };
  }

  async revokeApiKey(id: string): Promise<{ tenantId: string } | undefined> {
    if (!isUuid(id)) return undefined;
    const rows = await this.q.query<{ tenant_id: string }>(
      'UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING tenant_id',
      [id],
    );
    return rows[0] && { tenantId: rows[0].tenant_id };
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    const rows = await this.q.query<ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at`, [tenantId]);
    return rows.map(toApiKey);
  }

  async insertDataKey(key: { tenantId: string; purpose: KeyPurpose; wrapped: WrappedKey }): Promise<StoredDataKey> {
    const rows = await this.q.query<{ id: string; created_at: Date }>(
      // generated_under: the key as first wrapped, kept through re-wraps (migrations/0018).
      'INSERT INTO data_keys (tenant_id, purpose, kms_key_id, wrapped, generated_under) VALUES ($1, $2, $3, $4, $3) RETURNING id, created_at',
      [key.tenantId, key.purpose, key.wrapped.kmsKeyId, key.wrapped.ciphertext],
    );
    return { id: rows[0]!.id, tenantId: key.tenantId, purpose: key.purpose, wrapped: key.wrapped, createdAt: rows[0]!.created_at };
  }

  async findDataKey(id: string): Promise<StoredDataKey | undefined> {
    const rows = await this.q.query<{ id: string; tenant_id: string; purpose: KeyPurpose; kms_key_id: string; wrapped: Buffer; created_at: Date }>(
      'SELECT id, tenant_id, purpose, kms_key_id, wrapped, created_at FROM data_keys WHERE id = $1',
      [id],
    );
    const row = rows[0];
    return row && { id: row.id, tenantId: row.tenant_id, purpose: row.purpose, wrapped: { kmsKeyId: row.kms_key_id, ciphertext: row.wrapped }, createdAt: row.created_at };
  }

  async liveFingerprintKeys(tenantId: string): Promise<StoredFingerprintKey[]> {
    const rows = await this.q.query<{ generation: number; state: Exclude<FingerprintKeyState, 'retired'>; kms_key_id: string; key_wrapped: Buffer }>(
      "SELECT generation, state, kms_key_id, key_wrapped FROM fingerprint_keys WHERE tenant_id = $1 AND state <> 'retired' ORDER BY generation",
      [tenantId],
    );
    return rows.map((r) => ({ generation: r.generation, state: r.state, wrapped: { kmsKeyId: r.kms_key_id, ciphertext: r.key_wrapped } }));
  }
}
