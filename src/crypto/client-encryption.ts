// The vault's JWE keys for card data the hosted form and backends encrypt before sending: private JWKs sealed
// under the KMS, public halves published as a JWKS, rotated with overlap; every bad JWE meets one error.
import { createHash } from 'node:crypto';
import jose from 'node-jose';
import type { AuditTrail, Clock, Kms, WrappedKey } from '../domain/ports';
import { VaultError } from '../errors';
import { open, seal, type Sealed } from './sealer';

/**
 * RSA-OAEP-256 rather than ECDH-ES+A256KW: the header then carries no key of the sender's choosing (ECDH-ES
 * sends an ephemeral public key, `epk`, that the vault would have to parse and check is on the curve before
 * using it with its private key; node-jose has had EC input-handling flaws), the only attacker-chosen input
 * to the private key is one ciphertext that OpenSSL decrypts, and browsers' WebCrypto does RSA-OAEP/SHA-256
 * natively where ECDH-ES needs a hand-written Concat KDF. The price: a 384-byte encrypted key per JWE and a
 * few milliseconds of CPU per decrypt. 3072 bits gives 128-bit security (NIST SP 800-57), past 2030.
 */
export const JWE_ALG = 'RSA-OAEP-256';
export const JWE_ENC = 'A256GCM';
const RSA_BITS = 3072;

/** A card body is a few hundred bytes; the bound caps the work one request can ask for. */
export const MAX_PLAINTEXT_BYTES = 8 * 1024;
const MAX_HEADER_CHARS = 1024;
const MAX_JWE_CHARS = 16 * 1024;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Who may use a JWE, named in its protected header, which AES-GCM authenticates with the card: the tenant
 * (POST /v1/tokens, its name) or the hosted form's client session (POST /hosted/tokens, a digest of its token).
 * Without it one JWE, taken from a merchant's page or backend, would tokenize under any tenant's API key.
 */
const TENANT_PARAM = 'cardvault_tenant';
const SESSION_PARAM = 'cardvault_session';
const BINDING_PARAMS = [TENANT_PARAM, SESSION_PARAM] as const;

/** The one binding a request accepts, from its authenticated principal: a JWE must carry it and no other. */
export interface JweBinding {
  param: (typeof BINDING_PARAMS)[number];
  value: string;
}

/** By name: `cardvault keys create` prints it beside each key, while the tenant's id reaches only operators and auditors. */
export const tenantBinding = (tenantName: string): JweBinding => ({ param: TENANT_PARAM, value: tenantName });

/** A digest, not the token: the header is readable by whoever holds the JWE, and the token is a credential. */
export const sessionBinding = (sessionToken: string): JweBinding => ({
  param: SESSION_PARAM,
  value: createHash('sha256').update(sessionToken, 'utf8').digest('base64url'),
});

/** Everything else — zip, crit, jku, jwk, x5u, x5c, epk, p2s… — is refused, not ignored. */
const ALLOWED_HEADER = new Set<string>(['alg', 'enc', 'kid', 'typ', 'cty', ...BINDING_PARAMS]);
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const KID = /^[A-Za-z0-9_-]{1,64}$/;

export interface StoredEncryptionKey {
  kid: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  wrappedKey: WrappedKey;
  sealed: Sealed;
  createdAt: Date;
  activatesAt: Date;
  retiresAt: Date | null;
}

export interface EncryptionKeyStore {
  insertEncryptionKey(key: Omit<StoredEncryptionKey, 'createdAt' | 'retiresAt'>): Promise<void>;
  listEncryptionKeys(): Promise<StoredEncryptionKey[]>;
  /** Sets retires_at on a key not yet retired; false when there is no such key. */
  retireEncryptionKey(kid: string, at: Date): Promise<boolean>;
}

/** The vault's own keys, not a tenant's; a purpose of their own, so no other wrapped key opens as one. */
const CONTEXT = { tenantId: 'system', purpose: 'client-encryption' } as const;

const aad = (kid: string) => Buffer.from(`cardvault/client-encryption-key/v1\u0000${kid}`, 'utf8');

/** The one answer to every bad JWE: telling which check failed would make the vault an oracle. */
const invalid = () =>
  new VaultError('invalid_jwe', `send a compact JWE (${JWE_ALG}, ${JWE_ENC}) to an unretired key from /.well-known/jwks.json`);

const retired = (key: StoredEncryptionKey, now: number) => key.retiresAt !== null && key.retiresAt.getTime() <= now;

/**
 * Rotation: a key is published and decrypts from creation until it is retired. `activatesAt` only tells
 * clients when to start encrypting to it: the JWKS lists the newest active key first, so a new key reaches
 * every cached JWKS before any client uses it, and the old one keeps decrypting until an operator retires it.
 */
export class ClientEncryptionKeys {
  /** Unwrapped private keys by kid; promises, so a burst after start-up costs one KMS call per key. */
  readonly #opened = new Map<string, Promise<jose.JWK.Key>>();

  constructor(
    private readonly kms: Kms,
    private readonly store: EncryptionKeyStore,
    private readonly clock: Clock,
    private readonly audit?: AuditTrail,
  ) {}

  /** Makes sure clients have a key to encrypt to (first start, or after the last one was retired). */
  async ensureKey(): Promise<void> {
    const now = this.clock.now().getTime();
    if (!(await this.store.listEncryptionKeys()).some((k) => !retired(k, now))) await this.createKey();
  }

  /** Creates a key, published and decrypting at once; clients are pointed at it from `activateAfterMs` on. */
  async createKey(activateAfterMs = 0): Promise<string> {
    const key = await jose.JWK.createKey('RSA', RSA_BITS, { alg: JWE_ALG, use: 'enc' });
    const dataKey = await this.kms.generateDataKey(CONTEXT);
    const privateJwk = Buffer.from(JSON.stringify(key.toJSON(true)), 'utf8');
    let sealed: Sealed;
    try {
      sealed = seal(dataKey.plaintext, privateJwk, aad(key.kid));
    } finally {
      dataKey.plaintext.fill(0);
      privateJwk.fill(0);
    }
    await this.store.insertEncryptionKey({
      kid: key.kid,
      alg: JWE_ALG,
      publicJwk: key.toJSON() as Record<string, unknown>,
      wrappedKey: dataKey.wrapped,
      sealed,
      activatesAt: new Date(this.clock.now().getTime() + activateAfterMs),
    });
    await this.audit?.record({
      tenantId: null,
      principal: 'system',
      action: 'key.encryption.create',
      outcome: 'success',
      details: { kid: key.kid, alg: JWE_ALG, activates_after_ms: activateAfterMs },
    });
    return key.kid;
  }

  /** Unpublishes a key and refuses every JWE to it from now on, on every instance (each decrypt reads the store). */
  async retireKey(kid: string): Promise<void> {
    if (!(await this.store.retireEncryptionKey(kid, this.clock.now()))) {
      throw new VaultError('not_found', 'no unretired encryption key has this kid');
    }
    this.#opened.delete(kid);
    await this.audit?.record({
      tenantId: null,
      principal: 'system',
      action: 'key.encryption.retire',
      outcome: 'success',
      details: { kid },
    });
  }

  /** Every unretired public key; the one to encrypt to (the newest already active) comes first. */
  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    const now = this.clock.now().getTime();
    const keys = (await this.store.listEncryptionKeys()).filter((k) => !retired(k, now));
    const active = keys.filter((k) => k.activatesAt.getTime() <= now);
    const current = active.sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())[0];
    const ordered = current ? [current, ...keys.filter((k) => k !== current)] : keys;
    return { keys: ordered.map((k) => ({ ...k.publicJwk, kid: k.kid, use: 'enc', alg: k.alg })) };
  }

  /**
   * The plaintext of a compact JWE to one of our unretired keys, bound to `binding`; `invalid_jwe` for anything
   * else. Replay under the same binding is not refused: a session is single-use, and a tenant that vaults the
   * same card again gets the token it already holds.
   */
  async decrypt(compactJwe: string, binding: JweBinding): Promise<Buffer> {
    const header = parseCompact(compactJwe);
    // Checked before any key is read or used. The GCM tag covers the header, so a JWE whose header was rewritten
    // to carry this binding fails the decrypt below: nobody can rebind a JWE they hold.
    if (!boundTo(header.fields, binding)) throw invalid();
    const key = await this.privateKey(header.kid);
    try {
      // The key itself, not a keystore: node-jose never picks a key, and the key admits only its own alg.
      const result = await jose.JWE.createDecrypt(key, { algorithms: [JWE_ALG, JWE_ENC] }).decrypt(compactJwe);
      return result.payload;
    } catch {
      throw invalid();
    }
  }

  /** Store and KMS failures pass through (503/500): they say nothing about the JWE, and are not the caller's fault. */
  private async privateKey(kid: string): Promise<jose.JWK.Key> {
    const now = this.clock.now().getTime();
    const usable = new Map((await this.store.listEncryptionKeys()).filter((k) => !retired(k, now)).map((k) => [k.kid, k]));
    // A retired key's private half leaves memory at the next decrypt, whichever kid that is for.
    for (const cached of this.#opened.keys()) if (!usable.has(cached)) this.#opened.delete(cached);
    const stored = usable.get(kid);
    if (!stored || stored.alg !== JWE_ALG) throw invalid();
    let opened = this.#opened.get(kid);
    if (!opened) {
      opened = this.unseal(stored);
      this.#opened.set(kid, opened);
      const mine = opened;
      opened.catch(() => this.#opened.get(kid) === mine && this.#opened.delete(kid));
    }
    return opened;
  }

  private async unseal(stored: StoredEncryptionKey): Promise<jose.JWK.Key> {
    const dataKey = await this.kms.decryptDataKey(stored.wrappedKey, CONTEXT);
    let privateJwk: Buffer;
    try {
      privateJwk = open(dataKey, stored.sealed, aad(stored.kid));
    } finally {
      dataKey.fill(0);
    }
    try {
      return await jose.JWK.asKey(JSON.parse(privateJwk.toString('utf8')));
    } finally {
      privateJwk.fill(0);
    }
  }
}

interface ProtectedHeader {
  kid: string;
  fields: Readonly<Record<string, unknown>>;
}

/** Checks the shape and the protected header before any key is touched; returns the header, whose kid picks the key. */
function parseCompact(jwe: unknown): ProtectedHeader {
  if (typeof jwe !== 'string' || jwe.length > MAX_JWE_CHARS) throw invalid();
  const parts = jwe.split('.');
  if (parts.length !== 5) throw invalid();
  const [header, encryptedKey, iv, ciphertext, tag] = parts as [string, string, string, string, string];
  if (header.length > MAX_HEADER_CHARS) throw invalid();
  const parsed = parseHeader(decodePart(header));
  decodePart(encryptedKey);
  // node-jose checks these too; checking here keeps the guarantee independent of its version.
  if (decodePart(iv).length !== IV_BYTES || decodePart(tag).length !== TAG_BYTES) throw invalid();
  if (decodePart(ciphertext).length > MAX_PLAINTEXT_BYTES) throw invalid();
  return parsed;
}

/** Trusted for dispatch only: the exact alg/enc pair, a kid, and no parameter outside the allowed few. */
function parseHeader(bytes: Buffer): ProtectedHeader {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid();
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw invalid();
  const fields = header as Record<string, unknown>;
  if (Object.keys(fields).some((name) => !ALLOWED_HEADER.has(name))) throw invalid();
  if (fields.alg !== JWE_ALG || fields.enc !== JWE_ENC) throw invalid();
  if (typeof fields.kid !== 'string' || !KID.test(fields.kid)) throw invalid();
  return { kid: fields.kid, fields };
}

/** Exactly the binding expected, a non-empty string: the other parameter absent, so no JWE serves two routes. */
function boundTo(fields: Readonly<Record<string, unknown>>, binding: JweBinding): boolean {
  if (binding.value.length === 0) return false;
  return BINDING_PARAMS.every((param) => (param === binding.param ? fields[param] === binding.value : !Object.hasOwn(fields, param)));
}

/** Canonical base64url only: a second spelling of the same bytes would let a changed character still decrypt. */
function decodePart(part: string): Buffer {
  if (!BASE64URL.test(part)) throw invalid();
  const bytes = Buffer.from(part, 'base64url');
  if (bytes.toString('base64url') !== part) throw invalid();
  return bytes;
}
