// The card use cases: tokenize, read, update, detokenize, delete, each authorized against the caller's role and audited.
import { VaultError } from '../errors';
import { toMetadata, type CardInput, type CardMetadata, type TokenizeOutcome } from './card-metadata';
import { checkExpiry } from './expiry';
import { parityOf, type Parity } from './fingerprints';
import { authorize, authorizeDetokenize, type Principal, type RevealableField } from './policy';
import { audited } from './audited';
import { CVC_PURPOSE, type CvcHolder } from './cvc';
import type { AuditTrail, CardCrypto, CardRecord, CardStore, RequestContext, SealedCard, Tenant } from './ports';
import type { TokenFormat } from './token';
import { cardDeleted, Tokenizer, type TokenizerDeps } from './tokenizer';

export type RevealedCard = Partial<Record<RevealableField, string | number | null>>;

export interface VaultDeps extends TokenizerDeps {
  audit: AuditTrail;
  cvc: CvcHolder;
}

/** A merged token points at its survivor, which a later merge may point on again; never more than a few hops. */
const MAX_MERGE_HOPS = 8;
/** Reads of a card re-sealed under a holder-name update before it gives up: each needs another writer in between. */
const MAX_RESEAL_ATTEMPTS = 3;

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
  readonly #tokenizer: Tokenizer;

  constructor(private readonly deps: VaultDeps) {
    this.#tokenizer = new Tokenizer(deps);
  }

  async tokenize(principal: Principal, ctx: RequestContext, card: CardInput, format: TokenFormat, idempotencyKey?: string): Promise<TokenizeOutcome> {
    return audited(this.deps.audit, principal, ctx, 'card.tokenize', null, async () => {
      authorize(principal, 'tokenize');
      const { outcome, replayed } = await this.#tokenizer.tokenize(principal.tenant, card, format, idempotencyKey);
      const { brand, bin, last4, token } = outcome.card;
      const tenantId = principal.tenant.id;
      // Deleting a card redacts the responses naming it; one recorded as the delete ran, or naming a token merged
      // into a card deleted since, still names it, and is not replayed either.
      if (replayed && !(await resolveCard(this.deps.cards, tenantId, token))) throw cardDeleted();
      // A replay changes nothing: a CVC it carries is not held again, since an authorization may have used the
      // first request's, and a retry must not make it revealable twice. A card vaulted just now cannot have a CVC
      // held yet: ask the store only for a known card, or on a replay. A card the issuer closed is never revealed
      // (detokenize answers card_closed), so a CVC for it is not held at all.
      const closed = outcome.card.status === 'closed';
      const cvcHeld =
        card.cvc && !replayed && !closed
          ? await this.deps.cvc.hold(tenantId, token, card.cvc)
          : !closed && (replayed || !outcome.created) && (await this.deps.cvc.held(tenantId, token));
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
      let card: CardRecord | undefined;
      let updated: CardRecord | 'stale' | undefined = 'stale';
      // A new holder name is sealed with the number read here: should the card be re-sealed in between (the
      // account updater's new number, a rotation), writing it would bring the old number back, so it is read again.
      for (let attempt = 0; updated === 'stale' && attempt < MAX_RESEAL_ATTEMPTS; attempt++) {
        card = await resolveCard(this.deps.cards, tenantId, token);
        if (!card) throw notFound();
        if (card.status === 'closed') throw new VaultError('card_closed');
        let sealed;
        if (changes.holderName !== undefined) {
          const secret = await this.deps.crypto.open(tenantId, card.token, sealedOf(card));
          sealed = { card: await this.deps.crypto.seal(tenantId, card.token, { pan: secret.pan, holderName: changes.holderName }), replaces: sealedOf(card) };
        }
        updated = await this.deps.cards.updateCard(tenantId, card.token, { expMonth: changes.expMonth, expYear: changes.expYear, sealed });
      }
      if (updated === 'stale') throw new VaultError('card_busy');
      if (!updated || !card) throw notFound();
      const fields = Object.entries({ exp_month: changes.expMonth, exp_year: changes.expYear, holder_name: changes.holderName })
        .filter(([, value]) => value !== undefined)
        .map(([name]) => name);
      const current = await currentParity(this.deps.crypto, principal.tenant);
      return { result: { ...toMetadata(updated, current, token), cvcHeld: await this.deps.cvc.held(tenantId, updated.token) }, details: { fields } };
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
}
