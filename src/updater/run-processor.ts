// Moves one account-updater run through its states; every step is a fenced transaction, so a crash anywhere resumes.
//
// pending → (batches and inquiries written, cards marked inquired) → sending → (each batch's file sent, the batch
// marked sent) → awaiting_response → (each answer applied in chunks; an inquiry is applied and marked in one
// transaction) → completed. A file is re-sent or re-read after a crash; the inquiry marks make that harmless.
import { randomBytes } from 'node:crypto';
import type { AuditTrail, CardCrypto, Clock, CvcStore, Tenant, TenantStore } from '../domain/ports';
import type { Logger } from '../log';
import type { Queryable } from '../store/db';
import { batchesOf, findBatch, inquiredCards, updaterTx, type PgUpdaterStore } from '../store/updater-store';
import { tokensWithStaleCvc, type AnswerOrigin, type PreparedAnswers, type UpdateApplier } from './apply-update';
import type { Inquiry, NetworkResponse, UpdateOutcome } from './formats/types';
import { brandsOf, NETWORKS, type CardUpdate, type NetworkName, type RunError, type UpdaterRun } from './model';
import type { NetworkAdapter } from './network/adapter';

export interface RunProcessorDeps {
  store: PgUpdaterStore;
  tenants: Pick<TenantStore, 'findTenantById'>;
  crypto: CardCrypto;
  applier: UpdateApplier;
  adapters: Readonly<Record<NetworkName, NetworkAdapter>>;
  audit: AuditTrail;
  clock: Clock;
  log: Logger;
  /** Answers applied per transaction. */
  applyChunk: number;
  /** A run whose answers have not all arrived after this long is failed; its unanswered cards wait for the next. */
  responseTimeoutMs: number;
  /** Told what each committed step did, for metrics; never given a card, a token or a tenant. */
  observer?: RunObserver;
  /** The vault's CVC store, whose CVCs a new number makes stale; absent, they are left to expire. */
  cvcs?: Pick<CvcStore, 'discard'>;
}

export interface RunObserver {
  /** `count` answers of one outcome applied (no_response: closed unanswered) in a committed transaction. */
  outcomes(network: NetworkName, outcome: UpdateOutcome | 'no_response', count: number): void;
  runFinished(state: 'completed' | 'failed'): void;
}

/** Batch ids go into file names and headers: 20 characters of the formats' alphabet. */
function newBatchId(): string {
  return `B${randomBytes(12).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 19)}`;
}

export class RunProcessor {
  constructor(private readonly deps: RunProcessorDeps) {}

  /** Takes the run as far as it can go now; returns once it waits on a network or is finished. */
  async advance(run: UpdaterRun, fence: number): Promise<void> {
    const fenced = <T>(work: (tx: Queryable) => Promise<T>) => this.deps.store.fenced(run.tenantId, fence, work);
    if (run.state === 'pending') {
      if (!(await this.build(run, fenced))) return;
      run = { ...run, state: 'sending' };
    }
    if (run.state === 'sending') {
      await this.sendAll(run, fenced);
      await fenced((tx) => updaterTx.setRunState(tx, run.id, 'awaiting_response'));
      run = { ...run, state: 'awaiting_response' };
    }
    if (run.state === 'awaiting_response') await this.collect(run, fence, fenced);
  }

  /** Ingests a response file for any batch; one whose batch is already applied changes nothing. */
  async ingest(batchId: string, text: string, fence: number): Promise<void> {
    const batch = await findBatch(this.deps.store.db, batchId);
    if (!batch) return;
    const fenced = <T>(work: (tx: Queryable) => Promise<T>) => this.deps.store.fenced(batch.tenantId, fence, work);
    if (batch.state === 'applied') {
      await this.deps.adapters[batch.network].discard(batchId);
      return;
    }
    const tenant = await this.tenant(batch.tenantId);
    const adapter = this.deps.adapters[batch.network];
    const report = adapter.format.parseResponse(text);
    const errors: RunError[] = report.errors.map(({ line, code }) => ({ batch: batchId, line, code }));
    // A file whose header names another batch answers nothing here: every card of this batch goes unanswered.
    const answers = report.batchId === batchId ? report.responses : [];
    if (report.batchId !== undefined && report.batchId !== batchId) errors.push({ batch: batchId, line: 1, code: 'batch_mismatch' });
    for (let i = 0; i < answers.length; i += this.deps.applyChunk) {
      const chunk = answers.slice(i, i + this.deps.applyChunk);
      const origin = (ref: string): AnswerOrigin => ({ network: batch.network, source: 'batch', runId: batch.runId, batchId, ref });
      // Keys first: the chunk's transaction reaches no pool (PreparedAnswers says why).
      const prepared = await this.deps.applier.prepare(tenant, chunk);
      const { updates, unknown, outcomes } = await this.retryOnConflict(() =>
        fenced(async (tx) => {
          const result = await this.applyChunk(tx, prepared, batchId, chunk, origin);
          await updaterTx.addProgress(tx, batch.runId, result.applied, []);
          return result;
        }),
      );
      this.observeOutcomes(batch.network, outcomes);
      for (let n = 0; n < unknown.length; n++) errors.push({ batch: batchId, line: 0, code: 'unknown_reference' });
      await this.auditUpdates(updates);
    }
    const unanswered = await fenced(async (tx) => {
      const closed = await updaterTx.closeUnanswered(tx, batchId);
      await updaterTx.addProgress(tx, batch.runId, closed, errors);
      await updaterTx.markBatch(tx, batchId, 'applied');
      return closed;
    });
    if (unanswered > 0) this.deps.observer?.outcomes(batch.network, 'no_response', unanswered);
    await adapter.discard(batchId);
  }

  private async build(run: UpdaterRun, fenced: <T>(work: (tx: Queryable) => Promise<T>) => Promise<T>): Promise<boolean> {
    const settings = await this.deps.store.settings(run.tenantId);
    if (!settings || !settings.enabled) {
      await fenced((tx) => updaterTx.setRunState(tx, run.id, 'failed', { failure: 'updater_not_configured' }));
      this.deps.observer?.runFinished('failed');
      return false;
    }
    await fenced(async (tx) => {
      for (const network of NETWORKS) {
        if (!settings.networks[network]) continue;
        const batch = { id: newBatchId(), runId: run.id, tenantId: run.tenantId, network, brands: brandsOf([network]) };
        const count = await updaterTx.createBatch(tx, { ...batch, scope: run.scope, cadenceDays: settings.cadenceDays });
        // Nothing to ask this network: the batch is done without a file.
        if (count === 0) await updaterTx.markBatch(tx, batch.id, 'applied');
      }
      await updaterTx.setRunTotal(tx, run.id);
      await updaterTx.setRunState(tx, run.id, 'sending');
    });
    return true;
  }

  private async sendAll(run: UpdaterRun, fenced: <T>(work: (tx: Queryable) => Promise<T>) => Promise<T>): Promise<void> {
    const settings = await this.deps.store.settings(run.tenantId);
    for (const batch of await batchesOf(this.deps.store.db, run.id)) {
      if (batch.state !== 'created') continue;
      const merchantId = settings?.enabled ? settings.networks[batch.network]?.merchant_id : undefined;
      if (merchantId === undefined) {
        // The updater turned off, or this network removed, since the batch was built (a send that failed meanwhile):
        // nothing is sent, and its cards are closed unanswered, so the run can finish and the next one start.
        const closed = await fenced(async (tx) => {
          const n = await updaterTx.closeUnanswered(tx, batch.id);
          await updaterTx.addProgress(tx, run.id, n, []);
          await updaterTx.markBatch(tx, batch.id, 'applied');
          return n;
        });
        if (closed > 0) this.deps.observer?.outcomes(batch.network, 'no_response', closed);
        continue;
      }
      const inquiries: Inquiry[] = [];
      for (const { ref, cardVersion, card } of await inquiredCards(this.deps.store.db, batch.id)) {
        // Deleted, changed or opted out since the batch was built: not asked (consent withdrawn stops inquiries at
        // once), and closed as no_response when the answer comes.
        if (card.status !== 'active' || !card.sealed || !card.updater.enrolledAt || (cardVersion !== null && card.version !== cardVersion)) continue;
        const secret = await this.deps.crypto.open(run.tenantId, card.token, card.sealed);
        inquiries.push({ ref, pan: secret.pan.reveal(), expMonth: card.expMonth, expYear: card.expYear, merchantId });
      }
      const adapter = this.deps.adapters[batch.network];
      await adapter.send(batch.id, adapter.format.writeInquiry(batch.id, inquiries, this.deps.clock.now()));
      await fenced((tx) => updaterTx.markBatch(tx, batch.id, 'sent'));
      this.deps.log.info({ run_id: run.id, batch_id: batch.id, network: batch.network, cards: inquiries.length }, 'account-updater batch sent');
    }
  }

  private async collect(run: UpdaterRun, fence: number, fenced: <T>(work: (tx: Queryable) => Promise<T>) => Promise<T>): Promise<void> {
    const waiting: Array<{ id: string; network: NetworkName }> = [];
    for (const batch of await batchesOf(this.deps.store.db, run.id)) {
      if (batch.state === 'applied') continue;
      const text = await this.deps.adapters[batch.network].receive(batch.id);
      if (text === undefined) {
        waiting.push(batch);
        continue;
      }
      await this.ingest(batch.id, text, fence);
    }
    if (waiting.length === 0) {
      await fenced((tx) => updaterTx.finishRun(tx, run.id));
      this.deps.observer?.runFinished('completed');
      const finished = await this.deps.store.findRun(run.tenantId, run.id);
      await this.deps.audit.record({
        tenantId: run.tenantId,
        principal: 'system',
        action: 'updater.run.finish',
        outcome: 'success',
        details: { run_id: run.id, total: finished?.total ?? 0, counts: finished?.counts ?? {}, errors: finished?.errors.length ?? 0 },
      });
    } else if (run.startedAt && this.pastResponseTimeout(run.startedAt)) {
      // Requests the relay never took go before the run is failed: a failed run is not collected again, so a request
      // left then would keep its card numbers in the drop folder for good. Only the requests: an answer that still
      // comes is applied by the worker's stray-file pass.
      for (const batch of waiting) await this.deps.adapters[batch.network].withdraw(batch.id);
      await fenced((tx) => updaterTx.setRunState(tx, run.id, 'failed', { failure: 'response_timeout' }));
      this.deps.observer?.runFinished('failed');
      await this.deps.audit.record({ tenantId: run.tenantId, principal: 'system', action: 'updater.run.finish', outcome: 'failure', details: { run_id: run.id, code: 'response_timeout' } });
    }
  }

  /** Whether the response timeout has passed since `since`: for a run's start, or a response file no batch claims. */
  pastResponseTimeout(since: Date): boolean {
    return this.deps.clock.now().getTime() - since.getTime() > this.deps.responseTimeoutMs;
  }

  private async applyChunk(
    tx: Queryable,
    prepared: PreparedAnswers,
    batchId: string,
    answers: readonly NetworkResponse[],
    origin: (ref: string) => AnswerOrigin,
  ): Promise<{ applied: number; updates: CardUpdate[]; unknown: string[]; outcomes: UpdateOutcome[] }> {
    let applied = 0;
    const updates: CardUpdate[] = [];
    const unknown: string[] = [];
    const outcomes: UpdateOutcome[] = [];
    for (const answer of answers) {
      const inquiry = await updaterTx.claimInquiry(tx, batchId, answer.ref);
      if (!inquiry) {
        // Applied already (a file read twice) is silent; a reference we never sent is reported (not echoed).
        if (!(await updaterTx.knownRef(tx, batchId, answer.ref))) unknown.push(answer.ref);
        continue;
      }
      updates.push(...(await this.deps.applier.apply(tx, prepared, inquiry.token, answer, origin(answer.ref), inquiry.cardVersion)));
      await updaterTx.completeInquiry(tx, batchId, answer.ref, answer.outcome, answer.networkCode);
      outcomes.push(answer.outcome);
      applied += 1;
    }
    return { applied, updates, unknown, outcomes };
  }

  /** Counts a committed chunk's answers by outcome, for the observer. */
  private observeOutcomes(network: NetworkName, outcomes: readonly UpdateOutcome[]): void {
    if (!this.deps.observer) return;
    const counts = new Map<UpdateOutcome, number>();
    for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    for (const [outcome, count] of counts) this.deps.observer.outcomes(network, outcome, count);
  }

  /** A tokenize of the same new number can race a merge (unique fingerprint); the chunk is simply tried again. */
  private async retryOnConflict<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        if ((err as { code?: string }).code !== '23505' || attempt >= 3) throw err;
      }
    }
  }

  /**
   * Discards the CVCs committed changes made stale, audits the changes, then marks them; a crash in between leaves
   * them for the worker's sweep, which does all three (a change it finds audited was past the discard already).
   */
  async auditUpdates(updates: readonly CardUpdate[]): Promise<void> {
    await this.discardStaleCvcs(updates);
    await Promise.all(
      updates.map((u) =>
        this.deps.audit.record({
          tenantId: u.tenantId,
          principal: 'system',
          action: 'updater.card_update',
          outcome: 'success',
          token: u.token,
          details: { update_id: u.id, version: u.version, event: u.event, network: u.network, network_code: u.networkCode, source: u.source, run_id: u.runId, changes: u.changes },
        }),
      ),
    );
    await this.deps.store.markAudited(updates.map((u) => u.id));
  }

  /**
   * After the commit, never before: a change rolled back must not cost the card its CVC. A CVC that cannot be
   * discarded (its store unreachable) does not fail the change, which stands: it is logged, and until its TTL
   * (CVC_TTL_SECONDS, an hour at most) an authorization may get it with the new number. That is the merchant's own
   * CVC, shown to no one its policy does not already show it to; the issuer declines the mismatch.
   */
  private async discardStaleCvcs(updates: readonly CardUpdate[]): Promise<void> {
    const { cvcs, log } = this.deps;
    if (!cvcs) return;
    await Promise.all(
      tokensWithStaleCvc(updates).map(({ tenantId, token }) =>
        cvcs.discard(tenantId, token).catch((err: unknown) => log.warn({ err, tenant_id: tenantId }, 'a CVC held for a replaced or closed card could not be discarded')),
      ),
    );
  }

  private async tenant(id: string): Promise<Tenant> {
    const tenant = await this.deps.tenants.findTenantById(id);
    if (!tenant) throw new Error('a run names a tenant that does not exist');
    return tenant;
  }
}
