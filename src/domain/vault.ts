// The card use cases: tokenize, read, update, detokenize, delete, each authorized against the caller's role and audited.
import { VaultError } from '../errors';
import { checkExpiry } from './expiry';
import { parityOf, presentedFingerprint, type CardFingerprint, type Parity } from './fingerprints';
import type { Pan } from './pan';
import { authorize, authorizeDetokenize, type Principal, type RevealableField } from './policy';
import { audited } from './audited';
import { CVC_PURPOSE, type CvcHolder } from './cvc';
import type { Secret } from './secret';
import type { AuditTrail, CardCrypto, CardRecord, CardStore, Clock, RequestContext, SealedCard, Tenant } from './ports';
import { generateToken, type TokenFormat, type TokenRandomness } from './token';

export interface CardInput {
  pan: Pan;
  expMonth: number;
  expYear: number;
  holderName: string | null;
  cvc: Secret<string> | null;
}

/** Everything about a card on file except its secrets; JSON-safe so idempotent replays return it unchanged. */
export interface CardMetadata {
  token: string;
  format: TokenFormat;
  /** The current fingerprint-key generation's: it changes when the tenant's fingerprint key is rotated. */
  fingerprint: string;
  status: 'active' | 'closed';
  brand: string;
  bin: string;
  last4: string;
  expMonth: number;
  expYear: number;
  createdAt: string;
  updatedAt: string;
  version: number;
  contactCardholder: boolean;
  accountUpdater: { enrolled: boolean; enrolledAt: string | null; consentRef: string | null; lastInquiredAt: string | null };
  /** When this token was merged into another card (README, "Account updater"): the token it resolves to. */
  mergedInto?: string;
  /** Whether a CVC is held for this card right now; read live, never stored. */
  cvcHeld?: boolean;
}

export interface TokenizeOutcome {
  created: boolean;
  card: CardMetadata;
}

export type RevealedCard = Partial<Record<RevealableField, string | number | null>>;

export interface VaultDeps {
  cards: CardStore;
  audit: AuditTrail;
  cvc: CvcHolder;
  crypto: CardCrypto;
  randomness: TokenRandomness;
  clock: Clock;
  idempotencyTtlSeconds: number;
}

/** Token collisions are rare (≥ 100 free values even for a 12-digit PAN); a few fresh draws settle them. */
const MAX_TOKEN_ATTEMPTS = 8;
/** A merged token points at its survivor, which a later merge may point on again; never more than a few hops. */
const MAX_MERGE_HOPS = 8;

const iso = (date: Date | null) => (date ? date.toISOString() : null);

/**
 * `card` is the card itself, or the survivor a merged token resolves to; `token` stays the one asked for.
 * `current` is the parity of the tenant's current fingerprint generation (CardCrypto.fingerprintView).
 */
export function toMetadata(card: CardRecord, current: Parity, token = card.token): CardMetadata {
  const metadata: CardMetadata = {
    token,
    format: card.format,
    fingerprint: presentedFingerprint(card.fingerprints, current),
    status: card.status === 'closed' ? 'closed' : 'active',
    brand: card.brand,
    bin: card.bin,
    last4: card.last4,
    expMonth: card.expMonth,
    expYear: card.expYear,
    createdAt: card.createdAt.toISOString(),
    updatedAt: card.updatedAt.toISOString(),
    version: card.version,
    contactCardholder: card.contactCardholder,
    accountUpdater: {
      enrolled: card.updater.enrolledAt !== null,
      enrolledAt: iso(card.updater.enrolledAt),
      consentRef: card.updater.consentRef,
      lastInquiredAt: iso(card.updater.lastInquiredAt),
    },
  };
  if (token !== card.token) metadata.mergedInto = card.token;
  return metadata;
}

const notFound = () => new VaultError('token_not_found');

/** The parity of the tenant's current fingerprint generation, whose fingerprint responses show. */
export async function currentParity(crypto: Pick<CardCrypto, 'fingerprintView'>, tenant: Tenant): Promise<Parity> {
  return parityOf((await crypto.fingerprintView(tenant)).current);
}

/** The card a token stands for: itself, or (merged) the card it was merged into; undefined when deleted or unknown. */
export async function resolveCard(cards: Pick<CardStore, 'findCard'>, tenantId: string, token: string): Promise<CardRecord | undefined> {
  let card = await cards.findCard(tenantId, token);
  for (let hop = 0; card?.status === 'merged' && hop < MAX_MERGE_HOPS; hop++) {
    card = await cards.findCard(tenantId, card.mergedInto!);
  }
  return card && card.status !== 'merged' && card.sealed ? card : undefined;
}

function sealedOf(card: CardRecord): SealedCard {
  if (!card.sealed) throw new VaultError('internal_error', 'a resolved card has no ciphertext');
  return card.sealed;
}

export class Vault {
  constructor(private readonly deps: VaultDeps) {}

  async tokenize(principal: Principal, ctx: RequestContext, card: CardInput, format: TokenFormat, idempotencyKey?: string): Promise<TokenizeOutcome> {
    return audited(this.deps.audit, principal, ctx, 'card.tokenize', null, async () => {
      const { outcome, replayed } = await this.tokenizeOnce(principal, card, format, idempotencyKey);
      const { brand, bin, last4, token } = outcome.card;
      const tenantId = principal.tenant.id;
      // A card vaulted just now cannot have a CVC held yet: ask the store only for a known card.
      const cvcHeld = card.cvc
        ? await this.deps.cvc.hold(tenantId, token, card.cvc)
        : !outcome.created && (await this.deps.cvc.held(tenantId, token));
      const result = { ...outcome, card: { ...outcome.card, cvcHeld } };
      return { result, token, details: { format: outcome.card.format, brand, bin, last4, created: outcome.created, replayed, cvc_held: cvcHeld } };
    });
  }

  async getCard(principal: Principal, ctx: RequestContext, token: string): Promise<CardMetadata> {
    return audited(this.deps.audit, principal, ctx, 'card.read', token, async () => {
      authorize(principal, 'read');
      const card = await resolveCard(this.deps.cards, principal.tenant.id, token);
      if (!card) throw notFound();
      const current = await currentParity(this.deps.crypto, principal.tenant);
      return { result: { ...toMetadata(card, current, token), cvcHeld: await this.deps.cvc.held(principal.tenant.id, card.token) } };
    });
  }

  async updateCard(
    principal: Principal,
    ctx: RequestContext,
    token: string,
    changes: { expMonth?: number; expYear?: number; holderName?: string | null },
  ): Promise<CardMetadata> {
    return audited(this.deps.audit, principal, ctx, 'card.update', token, async () => {
      authorize(principal, 'update');
      const tenantId = principal.tenant.id;
      if (changes.expMonth !== undefined && changes.expYear !== undefined) {
        checkExpiry(changes.expMonth, changes.expYear, this.deps.clock.now());
      }
      const card = await resolveCard(this.deps.cards, tenantId, token);
      if (!card) throw notFound();
      if (card.status === 'closed') throw new VaultError('card_closed');
      let sealed;
      if (changes.holderName !== undefined) {
        const secret = await this.deps.crypto.open(tenantId, card.token, sealedOf(card));
        sealed = await this.deps.crypto.seal(tenantId, card.token, { pan: secret.pan, holderName: changes.holderName });
      }
      const updated = await this.deps.cards.updateCard(tenantId, card.token, { expMonth: changes.expMonth, expYear: changes.expYear, sealed });
      if (!updated) throw notFound();
      const fields = Object.entries({ exp_month: changes.expMonth, exp_year: changes.expYear, holder_name: changes.holderName })
        .filter(([, value]) => value !== undefined)
        .map(([name]) => name);
      const current = await currentParity(this.deps.crypto, principal.tenant);
      return { result: { ...toMetadata(updated, current, token), cvcHeld: await this.deps.cvc.held(tenantId, card.token) }, details: { fields } };
    });
  }

  /** No audit, no card: the PAN is returned only after the detokenize event is committed. */
  async detokenize(principal: Principal, ctx: RequestContext, token: string, purpose: string): Promise<{ token: string; card: RevealedCard }> {
    return audited(this.deps.audit, principal, ctx, 'card.detokenize', token, async () => {
      const fields = authorizeDetokenize(principal, purpose);
      const card = await resolveCard(this.deps.cards, principal.tenant.id, token);
      if (!card) throw notFound();
      // The issuer closed the account: no acquirer call can succeed, and none should be attempted with it.
      if (card.status === 'closed') throw new VaultError('card_closed');
      const secret = await this.deps.crypto.open(principal.tenant.id, card.token, sealedOf(card));
      // Taken (and so deleted) only when it may be shown: for an authorization, to a role that reveals it.
      const cvc = fields.includes('cvc') && purpose === CVC_PURPOSE ? await this.deps.cvc.take(principal.tenant.id, card.token) : undefined;
      const all: Required<RevealedCard> = {
        number: secret.pan.reveal(),
        exp_month: card.expMonth,
        exp_year: card.expYear,
        holder_name: secret.holderName,
        cvc: cvc ?? null,
      };
      const revealed: RevealedCard = {};
      for (const field of fields) if (field !== 'cvc' || cvc !== undefined) revealed[field] = all[field];
      return { result: { token, card: revealed }, details: { purpose, fields: Object.keys(revealed), bin: card.bin, last4: card.last4 } };
    });
  }

  async deleteCard(principal: Principal, ctx: RequestContext, token: string): Promise<void> {
    return audited(this.deps.audit, principal, ctx, 'card.delete', token, async () => {
      authorize(principal, 'delete');
      if (!(await this.deps.cards.destroyCard(principal.tenant.id, token))) throw notFound();
      await this.deps.cvc.discard(principal.tenant.id, token);
      return { result: undefined };
    });
  }

  private async tokenizeOnce(
    principal: Principal,
    card: CardInput,
    format: TokenFormat,
    idempotencyKey: string | undefined,
  ): Promise<{ outcome: TokenizeOutcome; replayed: boolean }> {
    authorize(principal, 'tokenize');
    const { tenant } = principal;
    const fingerprint = await this.deps.crypto.fingerprint(tenant, card.pan);
    if (idempotencyKey === undefined) {
      checkExpiry(card.expMonth, card.expYear, this.deps.clock.now());
      return { outcome: await this.vaultCard(this.deps.cards, tenant, card, format, fingerprint), replayed: false };
    }

    // The digest is keyed: a plain hash of a request holding a PAN would be a PAN-equivalent.
    const canonical = JSON.stringify([card.pan.reveal(), card.expMonth, card.expYear, card.holderName, format]);
    const digest = await this.deps.crypto.requestDigest(tenant, canonical);
    const keyDigests = await this.deps.crypto.idempotencyKeyDigests(tenant.id, idempotencyKey);
    return this.deps.cards.transaction(async (tx) => {
      const claim = await tx.claimIdempotencyKey(tenant.id, keyDigests, digest, this.deps.idempotencyTtlSeconds);
      if (!claim.claimed) {
        const recorded = claim.record.requestDigest;
        // Recorded under the previous fingerprint key (a rotation switched since): checked with that key.
        const ours = recorded.generation === digest.generation ? digest : await this.deps.crypto.requestDigest(tenant, canonical, recorded.generation);
        if (recorded.digest !== ours.digest) throw new VaultError('idempotency_key_reused');
        return { outcome: claim.record.response as TokenizeOutcome, replayed: true };
      }
      // Checked after the claim: a retry of an accepted request replays it even once the month has turned.
      checkExpiry(card.expMonth, card.expYear, this.deps.clock.now());
      const outcome = await this.vaultCard(tx, tenant, card, format, fingerprint);
      await tx.completeIdempotencyKey(claim.id, outcome);
      return { outcome, replayed: false };
    });
  }

  /** Inserts a new card, or converges on the tenant's existing token for this PAN (also under a race). */
  private async vaultCard(
    store: CardStore,
    tenant: Tenant,
    card: CardInput,
    format: TokenFormat,
    fingerprint: CardFingerprint,
  ): Promise<TokenizeOutcome> {
    const current = fingerprint.lookup.parity;
    for (let attempt = 0; attempt < MAX_TOKEN_ATTEMPTS; attempt += 1) {
      const token = generateToken(format, card.pan, this.deps.randomness);
      const sealed = await this.deps.crypto.seal(tenant.id, token, { pan: card.pan, holderName: card.holderName });
      const inserted = await store.insertCard({
        tenantId: tenant.id,
        token,
        format,
        fingerprints: fingerprint.columns,
        brand: card.pan.brand,
        bin: card.pan.bin,
        last4: card.pan.last4,
        expMonth: card.expMonth,
        expYear: card.expYear,
        sealed,
      });
      if (inserted) return { created: true, card: toMetadata(inserted, current) };

      const existing = await store.findCardByFingerprint(tenant.id, fingerprint.lookup);
      if (existing?.status === 'closed') return { created: false, card: toMetadata(existing, current) };
      if (existing) {
        // A later expiry on a known PAN means a reissued card: keep the later one, never move it back.
        const extended = await store.extendExpiry(tenant.id, existing.token, card.expMonth, card.expYear);
        return { created: false, card: toMetadata(extended ?? existing, current) };
      }
      // Neither the fingerprint nor a live row: the token collided with another card's; draw again.
    }
    throw new VaultError('token_space_exhausted');
  }
}
