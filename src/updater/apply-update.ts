// Applies one network answer to one card inside the caller's transaction: the change, its version, its webhook.
import { randomUUID } from 'node:crypto';
import type { CardFingerprint } from '../domain/fingerprints';
import { Pan } from '../domain/pan';
import type { CardCrypto, CardRecord, CardSealer, Clock, Tenant } from '../domain/ports';
import { isVaultError } from '../errors';
import type { Queryable } from '../store/db';
import { PgTenantStore } from '../store/tenant-store';
import { updaterTx } from '../store/updater-store';
import type { NetworkResponse } from './formats/types';
import type { CardUpdate, NetworkName, UpdateEvent, UpdateSource } from './model';
import type { CardEventData, WebhookEvent, WebhookEventType } from './webhooks/events';

/** Where an answer came from: a batch inquiry (with its run, batch and reference) or a real-time refresh. */
export interface AnswerOrigin {
  network: NetworkName;
  source: UpdateSource;
  runId: string | null;
  batchId: string | null;
  ref: string | null;
}

export interface ApplierDeps {
  crypto: CardCrypto;
  clock: Clock;
  /** Writes the event to the webhook outbox in the same transaction (store/webhook-store.ts). */
  enqueue: (tx: Queryable, event: WebhookEvent) => Promise<unknown>;
}

/**
 * What applying some answers needs from the keyring, taken before their transaction opens. Inside it, a re-read
 * fingerprint view or a new sealing key (stored and audited) would need a pool connection while the transaction
 * holds one: on PGlite, which runs one transaction at a time, it would wait for the transaction itself. The one
 * key that cannot be known before, the data key of the card as it is locked, is read through the transaction.
 */
export interface PreparedAnswers {
  tenant: Tenant;
  /** The new number of each new_account answer whose number is valid, its fingerprints, and a sealer for it. */
  newNumbers: ReadonlyMap<NetworkResponse, { pan: Pan; fingerprint: CardFingerprint; seal: CardSealer }>;
}

const masked = (card: CardRecord) => ({ bin: card.bin, last4: card.last4, exp_month: card.expMonth, exp_year: card.expYear });

export class UpdateApplier {
  constructor(private readonly deps: ApplierDeps) {}

  /** Before the transaction that applies these answers (PreparedAnswers says why). */
  async prepare(tenant: Tenant, answers: readonly NetworkResponse[]): Promise<PreparedAnswers> {
    const numbers: Array<[NetworkResponse, Pan]> = [];
    for (const answer of answers) {
      if (answer.outcome !== 'new_account') continue;
      try {
        numbers.push([answer, Pan.parse(answer.newPan ?? '')]);
      } catch (err) {
        if (!isVaultError(err)) throw err; // the formats check numbers; one that still fails is not applied
      }
    }
    if (numbers.length === 0) return { tenant, newNumbers: new Map() };
    const seal = await this.deps.crypto.sealer(tenant.id);
    const newNumbers = new Map<NetworkResponse, { pan: Pan; fingerprint: CardFingerprint; seal: CardSealer }>();
    // Every generation this instance writes (two while a fingerprint-key rotation overlaps them); the merge
    // looks the number up by the current one, as tokenize does, so both converge on the same unique index.
    for (const [answer, pan] of numbers) newNumbers.set(answer, { pan, fingerprint: await this.deps.crypto.fingerprint(tenant, pan), seal });
    return { tenant, newNumbers };
  }

  /**
   * Changes the card as the answer says and returns the versions written (none for an answer that changes
   * nothing, or for a card deleted, closed, merged or otherwise changed since it was inquired). A new number the
   * tenant already holds under another token is merged: that token resolves to this one from now on (README,
   * "Account updater"). `prepared`: what prepare made of the answers, this one among them. `askedVersion`: the
   * card's version the inquiry was about; an answer about an older version (one that arrived late) is stale, and
   * applying it would undo what a newer answer changed. Null when it is not known (inquiries made before it was kept).
   */
  async apply(
    tx: Queryable,
    prepared: PreparedAnswers,
    token: string,
    answer: NetworkResponse,
    origin: AnswerOrigin,
    askedVersion: number | null,
  ): Promise<CardUpdate[]> {
    const card = await updaterTx.lockCard(tx, prepared.tenant.id, token);
    if (!card || card.status !== 'active' || !card.sealed) return [];
    if (askedVersion !== null && card.version !== askedVersion) return [];
    switch (answer.outcome) {
      case 'new_account':
        return this.newAccount(tx, prepared, card, answer, origin);
      case 'new_expiry': {
        const { newExpMonth: month, newExpYear: year } = answer;
        if (month === undefined || year === undefined || (month === card.expMonth && year === card.expYear)) return [];
        const next = { ...card, expMonth: month, expYear: year, contactCardholder: false };
        return [await this.write(tx, card, next, 'card.expiry_updated', answer, origin, { previous_expiry: expiryOf(card), new_expiry: expiryOf(next) })];
      }
      case 'closed': {
        const next: CardRecord = { ...card, status: 'closed', closedAt: this.deps.clock.now(), updater: { ...card.updater, enrolledAt: null } };
        return [await this.write(tx, card, next, 'card.closed', answer, origin, { status: { from: 'active', to: 'closed' } })];
      }
      case 'contact_cardholder': {
        if (card.contactCardholder) return [];
        const next = { ...card, contactCardholder: true };
        return [await this.write(tx, card, next, 'card.contact_cardholder', answer, origin, { contact_cardholder: true })];
      }
      case 'opted_out': {
        // The cardholder opted out at the issuer: consent is gone, so the card leaves the updater.
        const next = { ...card, updater: { ...card.updater, enrolledAt: null, consentRef: null } };
        return [await this.write(tx, card, next, 'card.updater_opted_out', answer, origin, { enrolled: { from: true, to: false } })];
      }
      default:
        return [];
    }
  }

  private async newAccount(tx: Queryable, prepared: PreparedAnswers, card: CardRecord, answer: NetworkResponse, origin: AnswerOrigin): Promise<CardUpdate[]> {
    const tenant = prepared.tenant;
    const number = prepared.newNumbers.get(answer);
    if (!number) return [];
    const { pan, fingerprint } = number;
    if (fingerprint.lookup.value === card.fingerprints[fingerprint.lookup.parity]) return [];
    const written: CardUpdate[] = [];
    let mergedToken: string | undefined;
    const holder = await updaterTx.lockCardByFingerprint(tx, tenant.id, fingerprint.lookup);
    if (holder && holder.token !== card.token) {
      // Released first, so the number's fingerprint is free when this card takes it (one active card per number).
      const alias: CardRecord = { ...holder, status: 'merged', sealed: null, mergedInto: card.token, updater: { enrolledAt: null, consentRef: null, lastInquiredAt: holder.updater.lastInquiredAt } };
      written.push(await this.write(tx, holder, alias, 'card.merged', answer, origin, { status: { from: holder.status, to: 'merged' }, merged_into: card.token }));
      mergedToken = holder.token;
    }
    // The card as locked may have been sealed since it was read (by a key not in memory): its key comes through tx.
    const secret = await this.deps.crypto.open(tenant.id, card.token, card.sealed!, new PgTenantStore(tx));
    const sealed = number.seal(card.token, { pan, holderName: secret.holderName });
    const next: CardRecord = {
      ...card,
      fingerprints: fingerprint.columns,
      sealed,
      brand: pan.brand,
      bin: pan.bin,
      last4: pan.last4,
      expMonth: answer.newExpMonth ?? card.expMonth,
      expYear: answer.newExpYear ?? card.expYear,
      contactCardholder: false,
    };
    const changes = { previous: masked(card), current: masked(next), ...(mergedToken ? { merged_token: mergedToken } : {}) };
    written.push(await this.write(tx, card, next, 'card.updated', answer, origin, changes, mergedToken));
    return written;
  }

  /** Writes the card, its history row and (for the four merchant events) its webhook, all in `tx`. */
  private async write(
    tx: Queryable,
    before: CardRecord,
    after: CardRecord,
    event: UpdateEvent,
    answer: NetworkResponse,
    origin: AnswerOrigin,
    changes: Record<string, unknown>,
    mergedToken?: string,
  ): Promise<CardUpdate> {
    const version = await updaterTx.writeCard(tx, after);
    const update = await updaterTx.insertUpdate(tx, {
      tenantId: after.tenantId,
      token: after.token,
      version,
      event,
      network: origin.network,
      networkCode: answer.networkCode,
      source: origin.source,
      runId: origin.runId,
      batchId: origin.batchId,
      ref: origin.ref,
      changes: { ...changes, outcome: answer.outcome },
    });
    if (isMerchantEvent(event)) {
      await this.deps.enqueue(tx, {
        id: randomUUID(),
        type: event,
        tenantId: after.tenantId,
        createdAt: this.deps.clock.now(),
        data: eventData(before, after, version, answer, origin, event, mergedToken),
      });
    }
    return update;
  }
}

/**
 * The tokens whose held CVC these committed changes made useless: the card with its new account and a card merged
 * into it (it resolves to that one now), whose CVC was given with a number they no longer reveal, and a card the
 * issuer closed, which detokenize never reveals again.
 */
export function tokensWithStaleCvc(updates: readonly CardUpdate[]): Array<{ tenantId: string; token: string }> {
  return updates
    .filter((u) => u.event === 'card.updated' || u.event === 'card.merged' || u.event === 'card.closed')
    .map(({ tenantId, token }) => ({ tenantId, token }));
}

function expiryOf(card: CardRecord) {
  return { exp_month: card.expMonth, exp_year: card.expYear };
}

function isMerchantEvent(event: UpdateEvent): event is WebhookEventType {
  return event === 'card.updated' || event === 'card.expiry_updated' || event === 'card.closed' || event === 'card.contact_cardholder';
}

function eventData(
  before: CardRecord,
  after: CardRecord,
  version: number,
  answer: NetworkResponse,
  origin: AnswerOrigin,
  event: WebhookEventType,
  mergedToken: string | undefined,
): CardEventData {
  const data: CardEventData = {
    token: after.token,
    card: { brand: after.brand, bin: after.bin, last4: after.last4, exp_month: after.expMonth, exp_year: after.expYear, status: after.status },
    reason: { outcome: answer.outcome, network: origin.network, network_code: answer.networkCode },
    source: origin.source,
    version,
  };
  if (event === 'card.updated') data.previous = masked(before);
  if (event === 'card.updated' || event === 'card.expiry_updated') data.new_expiry = expiryOf(after);
  if (mergedToken) data.merged_token = mergedToken;
  return data;
}
