// Signs audit checkpoints (JWS ES256 via node-jose) with keys whose private half is sealed under the KMS,
// publishes their public halves as a JWKS, and verifies checkpoint signatures for the auditor's tool.
import jose from 'node-jose';
import type { AuditTrail, Clock, Kms, WrappedKey } from '../domain/ports';
import { VaultError } from '../errors';
import { open, seal, type Sealed } from './sealer';

export const CHECKPOINT_TYP = 'cardvault-checkpoint+jws';

export interface StoredSigningKey {
  kid: string;
  publicJwk: Record<string, unknown>;
  wrappedKey: WrappedKey;
  sealed: Sealed;
  createdAt: Date;
  activatesAt: Date;
}

export interface SigningKeyStore {
  insertSigningKey(key: Omit<StoredSigningKey, 'createdAt'>): Promise<void>;
  listSigningKeys(): Promise<StoredSigningKey[]>;
}

/** Signing keys are the vault's own, not a tenant's; the KMS context names them so. */
const SIGNING_CONTEXT = { tenantId: 'system', purpose: 'signing' } as const;

const aad = (kid: string) => Buffer.from(`cardvault/signing-key/v1\u0000${kid}`, 'utf8');

export class CheckpointSigner {
  #active: { kid: string; key: jose.JWK.Key; activatesAt: number } | undefined;

  constructor(
    private readonly kms: Kms,
    private readonly store: SigningKeyStore,
    private readonly clock: Clock,
    private readonly audit?: AuditTrail,
  ) {}

  /** Creates a key; it is published at once and signs from `activateAfterMs` on, so verifiers see it first. */
  async createKey(activateAfterMs = 0): Promise<string> {
    const key = await jose.JWK.createKey('EC', 'P-256', { alg: 'ES256', use: 'sig' });
    const dataKey = await this.kms.generateDataKey(SIGNING_CONTEXT);
    const sealed = seal(dataKey.plaintext, Buffer.from(JSON.stringify(key.toJSON(true)), 'utf8'), aad(key.kid));
    dataKey.plaintext.fill(0);
    await this.store.insertSigningKey({
      kid: key.kid,
      publicJwk: key.toJSON() as Record<string, unknown>,
      wrappedKey: dataKey.wrapped,
      sealed,
      activatesAt: new Date(this.clock.now().getTime() + activateAfterMs),
    });
    this.#active = undefined;
    await this.audit?.record({
      tenantId: null,
      principal: 'system',
      action: 'key.signing.create',
      outcome: 'success',
      details: { kid: key.kid, activates_after_ms: activateAfterMs },
    });
    return key.kid;
  }

  /** Makes sure a signing key exists (first start). */
  async ensureKey(): Promise<void> {
    if ((await this.store.listSigningKeys()).length === 0) await this.createKey();
  }

  async sign(payload: Buffer): Promise<string> {
    const active = await this.activeKey();
    return jose.JWS.createSign({ format: 'compact', fields: { typ: CHECKPOINT_TYP, kid: active.kid } }, active.key)
      .update(payload)
      .final() as unknown as Promise<string>;
  }

  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return { keys: (await this.store.listSigningKeys()).map((k) => k.publicJwk) };
  }

  /** The newest key already active; re-read when a newer one may have activated. */
  private async activeKey(): Promise<{ kid: string; key: jose.JWK.Key }> {
    const now = this.clock.now().getTime();
    const keys = (await this.store.listSigningKeys()).filter((k) => k.activatesAt.getTime() <= now);
    const newest = keys.sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())[0];
    if (!newest) throw new VaultError('internal_error', 'no active checkpoint signing key');
    if (this.#active?.kid === newest.kid) return this.#active;
    const dataKey = await this.kms.decryptDataKey(newest.wrappedKey, SIGNING_CONTEXT);
    const privateJwk = open(dataKey, newest.sealed, aad(newest.kid));
    dataKey.fill(0);
    const key = await jose.JWK.asKey(JSON.parse(privateJwk.toString('utf8')));
    privateJwk.fill(0);
    this.#active = { kid: newest.kid, key, activatesAt: newest.activatesAt.getTime() };
    return this.#active;
  }
}

/** Verifies a checkpoint JWS against a JWKS; returns its payload bytes and kid, or throws. */
export async function verifyCheckpointJws(jws: string, jwks: { keys: unknown[] }): Promise<{ payload: Buffer; kid: string }> {
  const keystore = await jose.JWK.asKeyStore({ keys: jwks.keys as object[] } as never);
  const result = await jose.JWS.createVerify(keystore, { algorithms: ['ES256'] }).verify(jws);
  const header = result.header as { typ?: string; kid?: string };
  if (header.typ !== CHECKPOINT_TYP) throw new Error('not a cardvault checkpoint');
  return { payload: result.payload, kid: String(header.kid) };
}
