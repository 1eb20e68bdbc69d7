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
  #verifying: { keystore: jose.JWK.KeyStore; loadedAt: number } | undefined;

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
    this.#verifying = undefined;
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

  /** `typ` says what the payload is (a checkpoint, a client session), so no verifier takes one kind for another. */
  async sign(payload: Buffer, typ: string = CHECKPOINT_TYP): Promise<string> {
    const active = await this.activeKey();
    return jose.JWS.createSign({ format: 'compact', fields: { typ, kid: active.kid } }, active.key)
      .update(payload)
      .final() as unknown as Promise<string>;
  }

  /** Checks an ES256 signature by any published signing key and returns the header's `typ`; the caller checks it. */
  async verify(jws: string): Promise<{ payload: Buffer; typ: string; kid: string }> {
    const keystore = await this.verificationKeys(kidOf(jws));
    const result = await jose.JWS.createVerify(keystore, { algorithms: ['ES256'] }).verify(jws);
    const header = result.header as { typ?: unknown; kid?: unknown };
    return { payload: result.payload, typ: typeof header.typ === 'string' ? header.typ : '', kid: String(header.kid) };
  }

  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return { keys: (await this.store.listSigningKeys()).map((k) => k.publicJwk) };
  }

  /** Cached; a kid it lacks (a key another instance just created) reloads it, at most once a second. */
  private async verificationKeys(kid: string | undefined): Promise<jose.JWK.KeyStore> {
    const now = this.clock.now().getTime();
    const cached = this.#verifying;
    if (cached && ((kid !== undefined && cached.keystore.get(kid)) || now - cached.loadedAt < 1000)) return cached.keystore;
    const keystore = await jose.JWK.asKeyStore({ keys: (await this.jwks()).keys } as never);
    this.#verifying = { keystore, loadedAt: now };
    return keystore;
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

/** The protected header's kid, read without trusting it: it only picks which keys to load. */
function kidOf(jws: string): string | undefined {
  try {
    const header: unknown = JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8'));
    const kid = (header as { kid?: unknown } | null)?.kid;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined;
  }
}

/** Verifies a checkpoint JWS against a JWKS; returns its payload bytes and kid, or throws. */
export async function verifyCheckpointJws(jws: string, jwks: { keys: unknown[] }): Promise<{ payload: Buffer; kid: string }> {
  // One spelling per checkpoint: node-jose ignores bytes past an ES256 signature's 64, and non-canonical base64url.
  const parts = jws.split('.');
  const canonical = (part: string) => Buffer.from(part, 'base64url').toString('base64url') === part;
  if (parts.length !== 3 || parts[2]!.length !== 86 || !parts.every(canonical)) throw new Error('not a compact ES256 JWS');
  const keystore = await jose.JWK.asKeyStore({ keys: jwks.keys as object[] } as never);
  const result = await jose.JWS.createVerify(keystore, { algorithms: ['ES256'] }).verify(jws);
  const header = result.header as { typ?: string; kid?: string };
  if (header.typ !== CHECKPOINT_TYP) throw new Error('not a cardvault checkpoint');
  return { payload: result.payload, kid: String(header.kid) };
}
