// The account updater's use cases for merchants: settings, enrollment, runs, real-time refresh and card history.
import { randomUUID } from 'node:crypto';
import { audited } from '../domain/audited';
import { authorize, type Principal } from '../domain/policy';
import type { AuditTrail, CardCrypto, CardStore, Clock, RequestContext } from '../domain/ports';
import { toMetadata, type CardMetadata } from '../domain/card-metadata';
import { currentParity, resolveCard } from '../domain/vault';
import { VaultError } from '../errors';
import type { PgUpdaterStore } from '../store/updater-store';
import type { UpdateApplier } from './apply-update';
import type { NetworkResponse } from './formats/types';
import { networkOfBrand, type CardUpdate, type NetworkName, type RunScope, type RunTrigger, type UpdaterRun, type UpdaterSettings } from './model';
import type { NetworkAdapter } from './network/adapter';
import type { RunProcessor } from './run-processor';

export interface AccountUpdaterDeps {
  store: PgUpdaterStore;
  cards: Pick<CardStore, 'findCard'>;
  crypto: CardCrypto;
  applier: UpdateApplier;
  processor: Pick<RunProcessor, 'auditUpdates'>;
  adapters: Readonly<Record<NetworkName, NetworkAdapter>>;
  audit: AuditTrail;
  clock: Clock;
}

export interface RefreshResult {
  card: CardMetadata;
  outcome: NetworkResponse['outcome'];
  network: NetworkName;
  networkCode: string;
  updates: CardUpdate[];
}

const notFound = () => new VaultError('token_not_found');

export class AccountUpdater {
  constructor(private readonly deps: AccountUpdaterDeps) {}

  async settings(principal: Principal, ctx: RequestContext): Promise<UpdaterSettings | undefined> {
    return audited(this.deps.audit, principal, ctx, 'updater.settings.read', null, async () => {
      authorize(principal, 'updater');
      const settings = await this.deps.store.settings(principal.tenant.id);
      return { result: settings, details: { configured: settings !== undefined } };
    });
  }

  async configure(principal: Principal, ctx: RequestContext, settings: Omit<UpdaterSettings, 'updatedAt'>): Promise<UpdaterSettings> {
    return audited(this.deps.audit, principal, ctx, 'updater.settings.update', null, async () => {
      authorize(principal, 'updater');
      const saved = await this.deps.store.putSettings(principal.tenant.id, settings);
      return { result: saved, details: { enabled: saved.enabled, networks: Object.keys(saved.networks), cadence_days: saved.cadenceDays } };
    });
  }

  /** Opt-in records the merchant's card-on-file consent (and its reference); opt-out stops all further inquiries. */
  async enroll(principal: Principal, ctx: RequestContext, token: string, enrolled: boolean, consentRef: string | null): Promise<CardMetadata> {
    return audited(this.deps.audit, principal, ctx, enrolled ? 'updater.enroll' : 'updater.unenroll', token, async () => {
      authorize(principal, 'updater');
      const tenantId = principal.tenant.id;
      const card = await resolveCard(this.deps.cards, tenantId, token);
      if (!card) throw notFound();
      if (enrolled && card.status === 'closed') throw new VaultError('card_closed');
      if (enrolled && !networkOfBrand(card.brand)) throw new VaultError('network_not_supported', 'the account updater covers Visa and Mastercard cards');
      const changed = enrolled ? await this.deps.store.enroll(tenantId, card.token, consentRef) : await this.deps.store.unenroll(tenantId, card.token);
      if (!changed) throw notFound();
      return { result: toMetadata(changed, await currentParity(this.deps.crypto, principal.tenant), token), details: { consent_reference: consentRef !== null } };
    });
  }

  /** Starts a run now, or returns the tenant's open one: there is never more than one. */
  async startRun(principal: Principal, ctx: RequestContext, scope: RunScope, trigger: RunTrigger = 'api'): Promise<{ run: UpdaterRun; created: boolean }> {
    return audited(this.deps.audit, principal, ctx, 'updater.run.start', null, async () => {
      authorize(principal, 'updater');
      const settings = await this.deps.store.settings(principal.tenant.id);
      if (!settings?.enabled) throw new VaultError('updater_not_configured', 'PUT /v1/account-updater/settings first');
      const opened = await this.deps.store.openRun({ id: randomUUID(), tenantId: principal.tenant.id, trigger, scope, requestedBy: principal.apiKeyId });
      return { result: opened, details: { run_id: opened.run.id, created: opened.created, scope, trigger } };
    });
  }

  async run(principal: Principal, ctx: RequestContext, id: string): Promise<UpdaterRun> {
    return audited(this.deps.audit, principal, ctx, 'updater.runs.read', null, async () => {
      authorize(principal, 'updater');
      const run = /^[0-9a-f-]{36}$/.test(id) ? await this.deps.store.findRun(principal.tenant.id, id) : undefined;
      if (!run) throw new VaultError('not_found');
      return { result: run, details: { run_id: run.id } };
    });
  }

  async runs(principal: Principal, ctx: RequestContext, limit: number): Promise<UpdaterRun[]> {
    return audited(this.deps.audit, principal, ctx, 'updater.runs.read', null, async () => {
      authorize(principal, 'updater');
      const runs = await this.deps.store.listRuns(principal.tenant.id, limit);
      return { result: runs, details: { count: runs.length } };
    });
  }

  /** Every version the updater wrote for this token, oldest first; masked like the metadata. */
  async history(principal: Principal, ctx: RequestContext, token: string): Promise<{ card: CardMetadata; updates: CardUpdate[] }> {
    return audited(this.deps.audit, principal, ctx, 'card.updates.read', token, async () => {
      authorize(principal, 'read');
      const card = await resolveCard(this.deps.cards, principal.tenant.id, token);
      if (!card) throw notFound();
      const own = card.token === token ? [] : await this.deps.store.historyOf(principal.tenant.id, token);
      const updates = [...own, ...(await this.deps.store.historyOf(principal.tenant.id, card.token))];
      return { result: { card: toMetadata(card, await currentParity(this.deps.crypto, principal.tenant), token), updates } };
    });
  }

  /** Asks the card's network about this one card now (say, after a decline for an expired card) and applies the answer. */
  async refresh(principal: Principal, ctx: RequestContext, token: string): Promise<RefreshResult> {
    return audited(this.deps.audit, principal, ctx, 'card.refresh', token, async () => {
      authorize(principal, 'updater');
      const tenant = principal.tenant;
      const card = await resolveCard(this.deps.cards, tenant.id, token);
      if (!card) throw notFound();
      if (card.status === 'closed') throw new VaultError('card_closed');
      if (!card.updater.enrolledAt) throw new VaultError('card_not_enrolled', 'enroll the card (with the cardholder’s consent) first');
      const network = networkOfBrand(card.brand);
      if (!network) throw new VaultError('network_not_supported', 'the account updater covers Visa and Mastercard cards');
      const settings = await this.deps.store.settings(tenant.id);
      // Turned off stops real-time inquiries as it stops runs: no card number goes to a network meanwhile.
      if (!settings?.enabled) throw new VaultError('updater_not_configured', 'the account updater is turned off for this tenant');
      const merchantId = settings.networks[network]?.merchant_id;
      if (!merchantId) throw new VaultError('updater_not_configured', `no merchant id is set for ${network}`);
      const adapter = this.deps.adapters[network];
      if (!adapter.inquire) throw new VaultError('network_unavailable', `the connection to ${network} is batch-only`);

      const secret = await this.deps.crypto.open(tenant.id, card.token, card.sealed!);
      const answer = await adapter.inquire({ ref: 'realtime', pan: secret.pan.reveal(), expMonth: card.expMonth, expYear: card.expYear, merchantId });
      const origin = { network, source: 'real_time' as const, runId: null, batchId: null, ref: null };
      // Keys first: the transaction reaches no pool (PreparedAnswers says why).
      const prepared = await this.deps.applier.prepare(tenant, [answer]);
      // About the card as read above: a change committed since (a batch answer, a concurrent refresh) wins.
      const updates = await this.deps.store.db.transaction((tx) => this.deps.applier.apply(tx, prepared, card.token, answer, origin, card.version));
      await this.deps.processor.auditUpdates(updates);
      const now = await resolveCard(this.deps.cards, tenant.id, token);
      if (!now) throw notFound();
      const result = { card: toMetadata(now, await currentParity(this.deps.crypto, principal.tenant), token), outcome: answer.outcome, network, networkCode: answer.networkCode, updates };
      return { result, details: { outcome: answer.outcome, network, network_code: answer.networkCode, versions: updates.map((u) => u.version) } };
    });
  }
}
