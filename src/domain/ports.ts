// The interfaces the use cases depend on; store/ and crypto/ implement them, tests can swap them.
import type { CardFingerprint, FingerprintKeyState, Fingerprints, FingerprintView, Parity } from './fingerprints';
import type { Pan } from './pan';
import type { Secret } from './secret';
import type { TokenFormat } from './token';

export type KeyPurpose = 'card-data' | 'fingerprint' | 'signing' | 'client-encryption';

/** Bound into every KMS call as the encryption context: a wrapped key opens only for its tenant and purpose. */
export interface KeyContext {
  tenantId: string;
  purpose: KeyPurpose;
}

export interface WrappedKey {
  /** The KMS key (id or ARN; `local:<fingerprint>` for the key file) that wraps this data key. */
  kmsKeyId: string;
  ciphertext: Buffer;
}

export interface DataKey {
  plaintext: Buffer;
  wrapped: WrappedKey;
}

export interface Kms {
  readonly provider: 'local' | 'aws';
  /** Under `keyId` when given (a rotation's new key), else the configured one. */
  generateDataKey(context: KeyContext, keyId?: string): Promise<DataKey>;
  decryptDataKey(wrapped: WrappedKey, context: KeyContext): Promise<Buffer>;
  /** Re-wraps under another KMS key without the plaintext entering the vault (aws: ReEncrypt). */
  reEncrypt(wrapped: WrappedKey, context: KeyContext, destinationKeyId: string): Promise<WrappedKey>;
  /** The canonical id (aws: the ARN) of a key named by id, ARN or alias; fails if the KMS has no such key, or none that can wrap data keys. */
  resolveKeyId(keyId: string): Promise<string>;
}

export interface StoredDataKey {
  id: string;
  tenantId: string;
  purpose: KeyPurpose;
  wrapped: WrappedKey;
  createdAt: Date;
}

export interface DataKeyStore {
  insertDataKey(key: { tenantId: string; purpose: KeyPurpose; wrapped: WrappedKey }): Promise<StoredDataKey>;
  findDataKey(id: string): Promise<StoredDataKey | undefined>;
}

/** A tenant's fingerprint (HMAC) key of one generation; retired keys are destroyed and never listed. */
export interface StoredFingerprintKey {
  generation: number;
  state: Exclude<FingerprintKeyState, 'retired'>;
  wrapped: WrappedKey;
}

export interface FingerprintKeyStore {
  /** The tenant's keys that are not retired: its current key, and during a rotation one other. */
  liveFingerprintKeys(tenantId: string): Promise<StoredFingerprintKey[]>;
}

/** Fingerprint keys are not part of the tenant: they live in fingerprint_keys, by generation. */
export interface Tenant {
  id: string;
  name: string;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  role: string;
  label: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

/** What is sealed: the PAN and the holder name never leave this shape unencrypted except on detokenize. */
export interface CardSecret {
  pan: Pan;
  holderName: string | null;
}

export interface SealedCard {
  dataKeyId: string;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/** closed: the issuer closed the account (kept, refused by detokenize); merged: resolves to `mergedInto`. */
export type CardStatus = 'active' | 'closed' | 'merged' | 'deleted';

export interface CardRecord {
  tenantId: string;
  token: string;
  format: TokenFormat;
  /** By generation parity; both set while a rotation overlaps two generations, neither once deleted or merged. */
  fingerprints: Fingerprints;
  brand: string;
  bin: string;
  last4: string;
  expMonth: number;
  expYear: number;
  status: CardStatus;
  /** Null for a merged card: its number lives on the card it was merged into. */
  sealed: SealedCard | null;
  createdAt: Date;
  updatedAt: Date;
  /** 1 when vaulted; each change the account updater applies adds one. */
  version: number;
  contactCardholder: boolean;
  updater: { enrolledAt: Date | null; consentRef: string | null; lastInquiredAt: Date | null };
  closedAt: Date | null;
  mergedInto: string | null;
}

export type NewCard = Pick<CardRecord, 'tenantId' | 'token' | 'format' | 'fingerprints' | 'brand' | 'bin' | 'last4' | 'expMonth' | 'expYear'> & {
  sealed: SealedCard;
};

/** A keyed request digest and the fingerprint-key generation that keyed it. */
export interface RequestDigest {
  generation: number;
  digest: string;
}

/**
 * An Idempotency-Key as the vault keeps it: HMACs under the tenant's fingerprint keys, one per generation written
 * (the current one, and the other in a rotation's overlap), by parity. The key itself is the merchant's free text
 * and may hold anything, a card number included, so it is never stored.
 */
export type IdempotencyKeyDigests = Fingerprints;

export interface IdempotencyRecord {
  requestDigest: RequestDigest;
  /**
   * Null while the first request is still in flight (only visible after a crash mid-transaction: never);
   * DELETED_CARD_RESPONSE once the card it named was deleted.
   */
  response: unknown | null;
}

/** What a stored tokenize response becomes when its card is deleted: nothing of the card is left to replay. */
export const DELETED_CARD_RESPONSE = { deleted: true } as const;

export function isDeletedCardResponse(response: unknown): boolean {
  return typeof response === 'object' && response !== null && (response as { deleted?: unknown }).deleted === true;
}

/** Storage for the card use cases; a transaction hands out the same interface bound to one connection. */
export interface CardStore {
  /** Runs `fn` in a transaction, again if PostgreSQL ends it as a deadlock's victim: `fn` acts on `tx` only. */
  transaction<T>(fn: (tx: CardStore) => Promise<T>): Promise<T>;
  /** Inserts unless the token or one of the tenant's live fingerprints is taken; undefined on any conflict. */
  insertCard(card: NewCard): Promise<CardRecord | undefined>;
  /** insertCard for many cards in one statement, each answered as alone (at most one per PAN or token). */
  insertCards(cards: NewCard[]): Promise<(CardRecord | undefined)[]>;
  /** The active or closed card holding this number, by the fingerprint column of the given parity. */
  findCardByFingerprint(tenantId: string, fingerprint: { parity: Parity; value: string }): Promise<CardRecord | undefined>;
  /** Any card but a deleted one: active, closed, or merged (which the caller resolves). */
  findCard(tenantId: string, token: string): Promise<CardRecord | undefined>;
  /**
   * Moves the expiry forward only: a later expiry replaces an earlier one, never the reverse. Like any merchant
   * change of the expiry (updateCard), it bumps the card's version, so an account updater answer about the card
   * as it was inquired is stale and cannot move the expiry back.
   */
  extendExpiry(tenantId: string, token: string, expMonth: number, expYear: number): Promise<CardRecord | undefined>;
  /**
   * With `sealed`, the new ciphertext replaces `sealed.replaces` only: a card re-sealed meanwhile (the account
   * updater's new number, a rotation) is left alone and `stale` comes back, for the caller to read it again.
   */
  updateCard(
    tenantId: string,
    token: string,
    changes: { expMonth?: number; expYear?: number; sealed?: { card: SealedCard; replaces: SealedCard } },
  ): Promise<CardRecord | 'stale' | undefined>;
  /**
   * Destroys the ciphertext and fingerprints, leaving a tombstone so the token is never reissued, and in the same
   * statement replaces every stored tokenize response naming the token with DELETED_CARD_RESPONSE.
   */
  destroyCard(tenantId: string, token: string): Promise<boolean>;
  /**
   * Claims the key for this request (or takes over an expired claim); otherwise returns what is stored. The key
   * is matched, and stored, only by its digests.
   */
  claimIdempotencyKey(
    tenantId: string,
    key: IdempotencyKeyDigests,
    requestDigest: RequestDigest,
    ttlSeconds: number,
  ): Promise<{ claimed: true; id: string } | { claimed: false; record: IdempotencyRecord }>;
  /** Records the response of the claim `id` names, in the claim's transaction. */
  completeIdempotencyKey(id: string, response: unknown): Promise<void>;
  /**
   * Claims many keys (at most one claim per key) with their responses, in one statement; false for a key held
   * already, by a live or an expired record (claimIdempotencyKey settles those).
   */
  claimIdempotencyKeys(
    claims: { tenantId: string; key: IdempotencyKeyDigests; requestDigest: RequestDigest; response: unknown }[],
    ttlSeconds: number,
  ): Promise<boolean[]>;
}

export interface TenantStore {
  /** tenant_exists if the name is taken. */
  createTenant(id: string, name: string, fingerprintKey: WrappedKey): Promise<Tenant>;
  /** The tenant of this name if it was created over `olderThanMs` ago but its tenant.create event never committed. */
  findUnauditedTenant(name: string, olderThanMs: number): Promise<Tenant | undefined>;
  findTenantByName(name: string): Promise<Tenant | undefined>;
  findTenantById(id: string): Promise<Tenant | undefined>;
  countTenants(): Promise<number>;
  insertApiKey(key: { tenantId: string; role: string; keyHash: Buffer; label: string | null }): Promise<ApiKeyRecord>;
  /** The key with this hash, revoked or not (revokedAt says), with its tenant: one indexed lookup either way. */
  findApiKey(keyHash: Buffer): Promise<{ key: ApiKeyRecord; tenant: Tenant } | undefined>;
  /** Revokes an active key; returns its tenant, or undefined when there was no such active key. */
  revokeApiKey(id: string): Promise<{ tenantId: string } | undefined>;
  listApiKeys(tenantId: string): Promise<ApiKeyRecord[]>;
}

/** Seals a card under the data key it was made with: no store, no KMS, so it may run inside a transaction. */
export type CardSealer = (token: string, secret: CardSecret) => SealedCard;

/** Card-level cryptography: sealing under tenant data keys, keyed fingerprints, keyed request digests. */
export interface CardCrypto {
  seal(tenantId: string, token: string, secret: CardSecret): Promise<SealedCard>;
  /**
   * The tenant's current sealing key, taken now (a new one made and recorded if due), bound into a sealer: for
   * seals inside a transaction, where making a key would need the pool. Each seal counts as one use of the key.
   */
  sealer(tenantId: string): Promise<CardSealer>;
  /** `dataKeys`: where a key not in memory is read; inside a transaction, the transaction's own (see Keyring). */
  open(tenantId: string, token: string, sealed: SealedCard, dataKeys?: Pick<DataKeyStore, 'findDataKey'>): Promise<CardSecret>;
  /** The number's fingerprints for every generation this instance writes, and the one it looks up by. */
  fingerprint(tenant: Tenant, pan: Pan): Promise<CardFingerprint>;
  /** Which generations this instance writes and looks up by, as of its last read (at most a few seconds old). */
  fingerprintView(tenant: Tenant): Promise<FingerprintView>;
  /** Keyed with the current generation, or with `generation` (a replay recorded under an earlier key). */
  requestDigest(tenant: Tenant, canonicalRequest: string, generation?: number): Promise<RequestDigest>;
  /** An Idempotency-Key's digests under the generations the tenant's view writes, or under those given. */
  idempotencyKeyDigests(tenantId: string, key: string, generations?: number[]): Promise<IdempotencyKeyDigests>;
  sealCvc(tenantId: string, token: string, cvc: Secret<string>): Promise<SealedCard>;
  openCvc(tenantId: string, token: string, sealed: SealedCard): Promise<Secret<string>>;
  /** A webhook endpoint's HMAC secret, bound to its tenant and endpoint id. */
  sealWebhookSecret(tenantId: string, endpointId: string, secret: Secret<string>): Promise<SealedCard>;
  openWebhookSecret(tenantId: string, endpointId: string, sealed: SealedCard): Promise<Secret<string>>;
}

/** Where CVCs wait for their one authorization: Redis (or process memory) with a TTL, never PostgreSQL. */
export interface CvcStore {
  hold(tenantId: string, token: string, sealed: SealedCard, ttlSeconds: number): Promise<void>;
  /** Returns and deletes in one step: a CVC is revealed at most once. */
  take(tenantId: string, token: string): Promise<SealedCard | undefined>;
  held(tenantId: string, token: string): Promise<boolean>;
  discard(tenantId: string, token: string): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export const AUDIT_ACTIONS = [
  'card.tokenize',
  'card.read',
  'card.update',
  'card.delete',
  'card.detokenize',
  'auth.failure',
  'auth.denied',
  'tenant.create',
  'api_key.create',
  'api_key.revoke',
  'policy.load',
  'key.data_key.create',
  'key.signing.create',
  'key.encryption.create',
  'key.encryption.retire',
  'audit.read',
  'audit.export',
  'client_session.create',
  'client_session.redeem',
  'service.start',
  'service.stop',
  'updater.settings.update',
  'updater.enroll',
  'updater.unenroll',
  'updater.run.start',
  'updater.run.finish',
  'updater.card_update',
  'card.refresh',
  'card.updates.read',
  'webhook.endpoint.create',
  'webhook.endpoint.disable',
  'webhook.redrive',
  'webhook.endpoints.read',
  'webhook.deliveries.read',
  'updater.settings.read',
  'updater.runs.read',
  'key.rotation.start',
  'key.rotation.rewrap',
  'key.rotation.reencrypt',
  'key.rotation.complete',
  'key.rotation.abort',
  'key.rotation.reencrypt_requested',
  'key.fingerprint_rotation.start',
  'key.fingerprint_rotation.backfill',
  'key.fingerprint_rotation.switch',
  'key.fingerprint_rotation.retire',
  'key.fingerprint_rotation.complete',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** One thing that happened, as the use case knows it; the audit log adds sequence, time and hash chain. */
export interface AuditInput {
  tenantId: string | null;
  /** An API key id, `system` for the vault itself, or `cli` for an operator command. */
  principal: string;
  action: AuditAction;
  outcome: 'success' | 'failure' | 'denied';
  source?: string | null;
  requestId?: string | null;
  token?: string | null;
  /** Never a PAN: at most BIN and last 4, purposes, field names, codes and ids. */
  details?: Record<string, unknown>;
}

/** Resolves once the event is durably committed; rejects (audit_unavailable) if it could not be. */
export interface AuditTrail {
  record(event: AuditInput): Promise<void>;
}

/**
 * A trail whose events can also join a caller's database transaction (`Tx`, the store's handle on it): committed
 * with the change they record, or rolled back with it. For a state change that must never be without its event.
 */
export interface TransactionalAuditTrail<Tx> extends AuditTrail {
  recordWithin(tx: Tx, events: readonly AuditInput[]): Promise<void>;
}

/** Where a request came from, for the audit trail. */
export interface RequestContext {
  requestId: string | null;
  source: string | null;
}

export const SYSTEM_CONTEXT: RequestContext = { requestId: null, source: null };
