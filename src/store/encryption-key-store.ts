// Client-encryption (JWE) keys in PostgreSQL: public JWK in clear, private JWK only sealed; retiring is the one update.
import type { EncryptionKeyStore, StoredEncryptionKey } from '../crypto/client-encryption';
import type { Queryable } from './db';

interface Row {
  kid: string;
  alg: string;
  public_jwk: Record<string, unknown>;
  kms_key_id: string;
  wrapped_key: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  created_at: Date;
  activates_at: Date;
  retires_at: Date | null;
}

export class PgEncryptionKeyStore implements EncryptionKeyStore {
  constructor(private readonly q: Queryable) {}

  async insertEncryptionKey(key: Omit<StoredEncryptionKey, 'createdAt' | 'retiresAt'>): Promise<void> {
    await this.q.query(
      `INSERT INTO encryption_keys (kid, alg, public_jwk, kms_key_id, wrapped_key, iv, tag, ciphertext, activates_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        key.kid,
        key.alg,
        JSON.stringify(key.publicJwk),
        key.wrappedKey.kmsKeyId,
        key.wrappedKey.ciphertext,
        key.sealed.iv,
        key.sealed.tag,
        key.sealed.ciphertext,
        key.activatesAt,
      ],
    );
  }

  async listEncryptionKeys(): Promise<StoredEncryptionKey[]> {
    const rows = await this.q.query<Row>(
      `SELECT kid, alg, public_jwk, kms_key_id, wrapped_key, iv, tag, ciphertext, created_at, activates_at, retires_at
       FROM encryption_keys ORDER BY created_at, kid`,
    );
    return rows.map((r) => ({
      kid: r.kid,
      alg: r.alg,
      publicJwk: r.public_jwk,
      wrappedKey: { kmsKeyId: r.kms_key_id, ciphertext: r.wrapped_key },
      sealed: { iv: r.iv, tag: r.tag, ciphertext: r.ciphertext },
      createdAt: r.created_at,
      activatesAt: r.activates_at,
      retiresAt: r.retires_at,
    }));
  }

  async retireEncryptionKey(kid: string, at: Date): Promise<boolean> {
    const rows = await this.q.query<{ kid: string }>(
      'UPDATE encryption_keys SET retires_at = $2 WHERE kid = $1 AND retires_at IS NULL RETURNING kid',
      [kid, at],
    );
    return rows.length === 1;
  }
}
