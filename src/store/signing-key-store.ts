// Checkpoint signing keys in PostgreSQL: public JWK in clear, private JWK only sealed.
import type { SigningKeyStore, StoredSigningKey } from '../crypto/checkpoint-signer';
import type { Queryable } from './db';

interface Row {
  kid: string;
  public_jwk: Record<string, unknown>;
  kms_key_id: string;
  wrapped_key: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  created_at: Date;
  activates_at: Date;
}

export class PgSigningKeyStore implements SigningKeyStore {
  constructor(private readonly q: Queryable) {}

  async insertSigningKey(key: Omit<StoredSigningKey, 'createdAt'>): Promise<void> {
    await this.q.query(
      `INSERT INTO signing_keys (kid, public_jwk, kms_key_id, wrapped_key, iv, tag, ciphertext, activates_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [key.kid, JSON.stringify(key.publicJwk), key.wrappedKey.kmsKeyId, key.wrappedKey.ciphertext, key.sealed.iv, key.sealed.tag, key.sealed.ciphertext, key.activatesAt],
    );
  }

  async listSigningKeys(): Promise<StoredSigningKey[]> {
    const rows = await this.q.query<Row>(
      'SELECT kid, public_jwk, kms_key_id, wrapped_key, iv, tag, ciphertext, created_at, activates_at FROM signing_keys ORDER BY created_at',
    );
    return rows.map((r) => ({
      kid: r.kid,
      publicJwk: r.public_jwk,
      wrappedKey: { kmsKeyId: r.kms_key_id, ciphertext: r.wrapped_key },
      sealed: { iv: r.iv, tag: r.tag, ciphertext: r.ciphertext },
      createdAt: r.created_at,
      activatesAt: r.activates_at,
    }));
  }
}
