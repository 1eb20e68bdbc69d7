// The card use cases: tokenize, read, update, detokenize, delete, each authorized against the caller's role and audited.
import { VaultError } from '../errors';
import { checkExpiry } from './expiry';
import type { Pan } from './pan';
import { authorize, authorizeDetokenize, type Principal, type RevealableField } from './policy';
import { audited } from './audited';
import { CVC_PURPOSE, type CvcHolder } from './cvc';
import type { Secret } from './secret';
import type { AuditTrail, CardCrypto, CardRecord, CardStore, Clock, RequestContext, Tenant } from './ports';
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
  fingerprint: string;
  status: 'active';
  brand: string;
  bin: string;
  last4: string;
  expMonth: number;
  expYear: number;
  createdAt: string;
  updatedAt: string;
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

function toMetadata(card: CardRecord): CardMetadata {
  return {
    token: card.token,
    format: card.format,
    fingerprint: card.fingerprint,
    status: 'active',
    brand: card.brand,
    bin: card.bin,
    last4: card.last4,
    expMonth: card.expMonth,
    expYear: card.expYear,
    createdAt: card.createdAt.toISOString(),
    updatedAt: card.updatedAt.toISOString(),
  };
}

const notFound = () => new VaultError('token_not_found');

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
      const card = await this.deps.cards.findActiveCard(principal.tenant.id, token);
      if (!card) throw notFound();
      return { result: { ...toMetadata(card), cvcHeld: await this.deps.cvc.held(principal.tenant.id, token) } };
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
      const card = await this.deps.cards.findActiveCard(tenantId, token);
      if (!card) throw notFound();
      let sealed;
      if (changes.holderName !== undefined) {
        const secret = await this.deps.crypto.open(tenantId, token, card.sealed);
        sealed = await this.deps.crypto.seal(tenantId, token, { pan: secret.pan, holderName: changes.holderName });
      }
      const updated = await this.deps.cards.updateCard(tenantId, token, { expMonth: changes.expMonth, expYear: changes.expYear, sealed });
      if (!updated) throw notFound();
      const fields = Object.entries({ exp_month: changes.expMonth, exp_year: changes.expYear, holder_name: changes.holderName })
        .filter(([, value]) => value !== undefined)
        .map(([name]) => name);
      return { result: { ...toMetadata(updated), cvcHeld: await this.deps.cvc.held(tenantId, token) }, details: { fields } };
    });
  }

  /** No audit, no card: the PAN is returned only after the detokenize event is committed. */
  async detokenize(principal: Principal, ctx: RequestContext, token: string, purpose: string): Promise<{ token: string; card: RevealedCard }> {
    return audited(this.deps.audit, principal, ctx, 'card.detokenize', token, async () => {
      const fields = authorizeDetokenize(principal, purpose);
      const card = await this.deps.cards.findActiveCard(principal.tenant.id, token);
      if (!card) throw notFound();
      const secret = await this.deps.crypto.open(principal.tenant.id, token, card.sealed);
      // Taken (and so deleted) only when it may be shown: for an authorization, to a role that reveals it.
      const cvc = fields.includes('cvc') && purpose === CVC_PURPOSE ? await this.deps.cvc.take(principal.tenant.id, token) : undefined;
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
    const digest = await this.deps.crypto.requestDigest(
      tenant,
      JSON.stringify([card.pan.reveal(), card.expMonth, card.expYear, card.holderName, format]),
    );
    return this.deps.cards.transaction(async (tx) => {
      const claim = await tx.claimIdempotencyKey(tenant.id, idempotencyKey, digest, this.deps.idempotencyTtlSeconds);
      if (!claim.claimed) {
        if (claim.record.requestDigest !== digest) throw new VaultError('idempotency_key_reused');
        return { outcome: claim.record.response as TokenizeOutcome, replayed: true };
      }
      // Checked after the claim: a retry of an accepted request replays it even once the month has turned.
      checkExpiry(card.expMonth, card.expYear, this.deps.clock.now());
      const outcome = await this.vaultCard(tx, tenant, card, format, fingerprint);
      await tx.completeIdempotencyKey(tenant.id, idempotencyKey, outcome);
      return { outcome, replayed: false };
    });
  }

  /** Inserts a new card, or converges on the tenant's existing token for this PAN (also under a race). */
  private async vaultCard(
    store: CardStore,
    tenant: Tenant,
    card: CardInput,
    format: TokenFormat,
    fingerprint: string,
  ): Promise<TokenizeOutcome> {
    for (let attempt = 0; attempt < MAX_TOKEN_ATTEMPTS; attempt += 1) {
      const token = generateToken(format, card.pan, this.deps.randomness);
      const sealed = await this.deps.crypto.seal(tenant.id, token, { pan: card.pan, holderName: card.holderName });
      const inserted = await store.insertCard({
        tenantId: tenant.id,
        token,
        format,
        fingerprint,
        brand: card.pan.brand,
        bin: card.pan.bin,
        last4: card.pan.last4,
        expMonth: card.expMonth,
        expYear: card.expYear,
        sealed,
      });
      if (inserted) return { created: true, card: toMetadata(inserted) };

      const existing = await store.findActiveCardByFingerprint(tenant.id, fingerprint);
      if (existing) {
        // A later expiry on a known PAN means a reissued card: keep the later one, never move it back.
        const extended = await store.extendExpiry(tenant.id, existing.token, card.expMonth, card.expYear);
        return { created: false, card: toMetadata(extended ?? existing) };
      }
      // Neither the fingerprint nor a live row: the token collided with another card's; draw again.
    }
    throw new VaultError('token_space_exhausted');
  }
}
