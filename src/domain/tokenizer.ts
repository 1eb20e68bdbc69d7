// Tokenize: a card in, its token out, at most one card per PAN and one outcome per Idempotency-Key.
import { VaultError } from '../errors';
import { Batcher, ItemFailure, type BatcherLimits } from './batcher';
import { toMetadata, type CardInput, type TokenizeOutcome } from './card-metadata';
import { checkExpiry } from './expiry';
import type { CardFingerprint } from './fingerprints';
import { isDeletedCardResponse, type CardCrypto, type CardRecord, type CardSealer, type CardStore, type Clock, type IdempotencyKeyDigests, type IdempotencyRecord, type NewCard, type RequestDigest, type Tenant } from './ports';
import { generateToken, type TokenFormat, type TokenRandomness } from './token';

export interface TokenizerDeps {
  cards: CardStore;
  crypto: CardCrypto;
  randomness: TokenRandomness;
  clock: Clock;
  idempotencyTtlSeconds: number;
  /** How concurrent keyed requests share transactions (default KEYED_BATCH_LIMITS). */
  keyedBatch?: BatcherLimits;
}

export interface Tokenized {
  outcome: TokenizeOutcome;
  replayed: boolean;
}

/**
 * Each batch holds one pool connection for its transaction (BEGIN, insert cards, claim keys, COMMIT). Two out
 * at once: one let batches grow larger but would stall the process's every keyed request behind a batch waiting
 * on another instance's lock; four left them at 2.4 requests on average (README, Performance).
 */
export const KEYED_BATCH_LIMITS: BatcherLimits = { maxBatch: 64, maxInFlight: 2 };

/** A replay of a tokenize whose card was deleted since: the retry must not vault the number again unasked. */
export const cardDeleted = () => new VaultError('card_deleted', 'to vault the card again, tokenize it with a new Idempotency-Key');

/** Token collisions are rare (≥ 100 free values even for a 12-digit PAN); a few fresh draws settle them. */
const MAX_TOKEN_ATTEMPTS = 8;

/**
 * Everything the keyring gives a request is taken before any transaction opens: its fingerprint and its sealer.
 * A transaction holds a pool connection (on PGlite, the only transaction there is), and a new data key or a
 * re-read fingerprint view would need another: it would wait for the connection, or for the transaction itself.
 */
interface CardRequest {
  tenant: Tenant;
  card: CardInput;
  format: TokenFormat;
  fingerprint: CardFingerprint;
  seal: CardSealer;
}

interface KeyedRequest extends CardRequest {
  digest: RequestDigest;
  key: IdempotencyKeyDigests;
}

/**
 * The request as its digest sees it. Built only to be digested, never kept: the digest is keyed, since a plain
 * hash of a request holding a PAN would be a PAN-equivalent.
 */
const canonicalRequest = ({ card, format }: Pick<CardRequest, 'card' | 'format'>) =>
  JSON.stringify([card.pan.reveal(), card.expMonth, card.expYear, card.holderName, format]);

const created = (card: CardRecord, request: CardRequest): TokenizeOutcome => ({
  created: true,
  card: toMetadata(card, request.fingerprint.lookup.parity),
});

function expiryAccepted(card: CardInput, now: Date): boolean {
  try {
    checkExpiry(card.expMonth, card.expYear, now);
    return true;
  } catch {
    return false;
  }
}

/** Thrown to roll a batch back: these requests' keys answer for earlier requests, not for what the batch did. */
class KeysHeld extends Error {
  constructor(readonly requests: ReadonlySet<KeyedRequest>) {
    super('idempotency keys held already');
  }
}

export class Tokenizer {
  readonly #keyed: Batcher<KeyedRequest, Tokenized>;

  constructor(private readonly deps: TokenizerDeps) {
    // No two requests sharing a key or a card number are out at once, in one batch or two: the later meets the
    // earlier's committed rows, exactly as it would alone, instead of waiting on its locks.
    this.#keyed = new Batcher((requests) => this.tokenizeTogether(requests), deps.keyedBatch ?? KEYED_BATCH_LIMITS, (r) =>
      (['odd', 'even'] as const).flatMap((parity) => [
        ...(r.key[parity] ? [`key:${parity}:${r.tenant.id}:${r.key[parity]}`] : []),
        ...(r.fingerprint.columns[parity] ? [`pan:${parity}:${r.tenant.id}:${r.fingerprint.columns[parity]}`] : []),
      ]),
    );
  }

  async tokenize(tenant: Tenant, card: CardInput, format: TokenFormat, idempotencyKey: string | undefined): Promise<Tokenized> {
    if (idempotencyKey === undefined) {
      checkExpiry(card.expMonth, card.expYear, this.deps.clock.now());
      const [fingerprint, seal] = await Promise.all([this.deps.crypto.fingerprint(tenant, card.pan), this.deps.crypto.sealer(tenant.id)]);
      return { outcome: await this.vaultCard(this.deps.cards, { tenant, card, format, fingerprint, seal }), replayed: false };
    }
    const [fingerprint, seal, digest, key] = await Promise.all([
      this.deps.crypto.fingerprint(tenant, card.pan),
      this.sealerForKeyed(tenant),
      this.deps.crypto.requestDigest(tenant, canonicalRequest({ card, format })),
      this.deps.crypto.idempotencyKeyDigests(tenant.id, idempotencyKey),
    ]);
    return this.#keyed.submit({ tenant, card, format, fingerprint, seal, digest, key });
  }

  /**
   * The sealer, taken before the request's transaction, when it is not yet known whether the request seals: a
   * replay does not. A sealer that could not be had (the KMS refused a new data key) fails only the seals.
   */
  private async sealerForKeyed(tenant: Tenant): Promise<CardSealer> {
    try {
      return await this.deps.crypto.sealer(tenant.id);
    } catch (err) {
      return () => {
        throw err;
      };
    }
  }

  /**
   * One transaction for a batch of keyed requests: the cards are vaulted (one statement inserts the new ones),
   * then every key is claimed together with its response in one statement. A key found held (a retry, a key
   * used before, a concurrent request with the same key) undoes the transaction: the batch is tried once more
   * without those requests. What a batch does not settle goes alone, in a transaction of its own that claims
   * the key first: those requests, an expiry now past (which may only replay), and every request of a batch
   * whose transaction failed (a deadlock with another instance, a row the database refused, the database away).
   * Nothing of a rolled-back batch was acknowledged; of a batch whose commit was lost on the way back, the
   * records answer the retry as a replay.
   */
  private async tokenizeTogether(requests: KeyedRequest[]): Promise<(Tokenized | ItemFailure)[]> {
    const now = this.deps.clock.now();
    let together = requests.filter((r) => expiryAccepted(r.card, now));
    let settled = new Map<KeyedRequest, Tokenized>();
    for (let attempt = 0; attempt < 2 && together.length > 0; attempt += 1) {
      try {
        settled = await this.deps.cards.transaction((tx) => this.settleTogether(tx, together));
        break;
      } catch (err) {
        if (!(err instanceof KeysHeld)) break;
        const held = err.requests;
        together = together.filter((r) => !held.has(r));
      }
    }
    return Promise.all(requests.map((r) => settled.get(r) ?? this.tokenizeAlone(r).catch((err: unknown) => new ItemFailure(err))));
  }

  private async settleTogether(tx: CardStore, requests: KeyedRequest[]): Promise<Map<KeyedRequest, Tokenized>> {
    const outcomes = await this.vaultCards(tx, requests);
    const claimed = await tx.claimIdempotencyKeys(
      requests.map((r, i) => ({ tenantId: r.tenant.id, key: r.key, requestDigest: r.digest, response: outcomes[i] })),
      this.deps.idempotencyTtlSeconds,
    );
    const held = requests.filter((_, i) => !claimed[i]);
    if (held.length > 0) throw new KeysHeld(new Set(held));
    return new Map(requests.map((r, i) => [r, { outcome: outcomes[i]!, replayed: false }]));
  }

  private async tokenizeAlone(request: KeyedRequest): Promise<Tokenized> {
    const { tenant, card } = request;
    const settled = await this.deps.cards.transaction(async (tx): Promise<Tokenized | { held: IdempotencyRecord }> => {
      const claim = await tx.claimIdempotencyKey(tenant.id, request.key, request.digest, this.deps.idempotencyTtlSeconds);
      if (!claim.claimed) return { held: claim.record };
      // Checked after the claim: a retry of an accepted request replays it even once the month has turned.
      checkExpiry(card.expMonth, card.expYear, this.deps.clock.now());
      const outcome = await this.vaultCard(tx, request);
      await tx.completeIdempotencyKey(claim.id, outcome);
      return { outcome, replayed: false };
    });
    // After the transaction: a replay may need an earlier generation's fingerprint key, read from the pool.
    return 'held' in settled ? this.replay(request, settled.held) : settled;
  }

  /**
   * The recorded outcome, when the key was used for this same request; otherwise idempotency_key_reused. The card
   * deleted since: card_deleted, never a second card for the same key (the merchant deleted the first on purpose).
   */
  private async replay(request: KeyedRequest, record: IdempotencyRecord): Promise<Tokenized> {
    const recorded = record.requestDigest;
    // Recorded under the previous fingerprint key (a rotation switched since): checked with that key.
    const ours =
      recorded.generation === request.digest.generation
        ? request.digest
        : await this.deps.crypto.requestDigest(request.tenant, canonicalRequest(request), recorded.generation);
    if (recorded.digest !== ours.digest) throw new VaultError('idempotency_key_reused');
    if (isDeletedCardResponse(record.response)) throw cardDeleted();
    return { outcome: record.response as TokenizeOutcome, replayed: true };
  }

  /** A new card under a freshly drawn token, sealed for that token with the request's sealer; not yet stored. */
  private draft({ tenant, card, format, fingerprint, seal }: CardRequest): NewCard {
    const token = generateToken(format, card.pan, this.deps.randomness);
    return {
      tenantId: tenant.id,
      token,
      format,
      fingerprints: fingerprint.columns,
      brand: card.pan.brand,
      bin: card.pan.bin,
      last4: card.pan.last4,
      expMonth: card.expMonth,
      expYear: card.expYear,
      sealed: seal(token, { pan: card.pan, holderName: card.holderName }),
    };
  }

  /** Inserts a new card, or converges on the tenant's existing token for this PAN (also under a race). */
  private async vaultCard(store: CardStore, request: CardRequest): Promise<TokenizeOutcome> {
    for (let attempt = 0; attempt < MAX_TOKEN_ATTEMPTS; attempt += 1) {
      const inserted = await store.insertCard(this.draft(request));
      if (inserted) return created(inserted, request);
      const existing = await this.existingCard(store, request);
      if (existing) return existing;
      // Neither the fingerprint nor a live row: the token collided with another card's; draw again.
    }
    throw new VaultError('token_space_exhausted');
  }

  /** vaultCard for many requests (no two with one PAN), the new cards inserted in one statement. */
  private async vaultCards(store: CardStore, requests: CardRequest[]): Promise<TokenizeOutcome[]> {
    if (requests.length === 0) return [];
    const inserted = await store.insertCards(requests.map((r) => this.draft(r)));
    const outcomes: TokenizeOutcome[] = [];
    for (const [i, request] of requests.entries()) {
      const card = inserted[i];
      outcomes.push(card ? created(card, request) : ((await this.existingCard(store, request)) ?? (await this.vaultCard(store, request))));
    }
    return outcomes;
  }

  /** After a conflicting insert: the tenant's card with this PAN, its expiry extended; undefined when there is none. */
  private async existingCard(store: CardStore, { tenant, card, fingerprint }: CardRequest): Promise<TokenizeOutcome | undefined> {
    const current = fingerprint.lookup.parity;
    const existing = await store.findCardByFingerprint(tenant.id, fingerprint.lookup);
    if (existing?.status === 'closed') return { created: false, card: toMetadata(existing, current) };
    if (!existing) return undefined;
    // A later expiry on a known PAN means a reissued card: keep the later one, never move it back.
    const extended = await store.extendExpiry(tenant.id, existing.token, card.expMonth, card.expYear);
    return { created: false, card: toMetadata(extended ?? existing, current) };
  }
}
