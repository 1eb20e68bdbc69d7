// KMS key rotation without downtime: new data keys under the new KMS key once every instance has polled for the
// rotation, every existing wrapped key re-wrapped with ReEncrypt (its plaintext never in the vault with AWS KMS),
// and optionally every card and webhook secret re-sealed.
//
// Each step is resumable: a rotation row records the generation and progress; re-running the command picks up the
// open rotation, and every row is replaced only if it is still what was read.
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditInput, CardCrypto, Kms, TransactionalAuditTrail } from '../domain/ports';
import type { Queryable } from '../store/db';
import { WRAPPED_TABLE_NAMES, type KeyRotation, type PgKeyRotationStore } from '../store/key-rotation-store';

export interface RotationProgress {
  phase: 'rewrap' | 'reencrypt';
  done: number;
  total: number;
}

export interface KeyRotatorDeps {
  kms: Kms;
  store: PgKeyRotationStore;
  crypto: Pick<CardCrypto, 'open' | 'seal' | 'openWebhookSecret' | 'sealWebhookSecret'>;
  /** Each state change commits with its event (recordWithin): a crash never leaves a rotation step unaudited. */
  audit: TransactionalAuditTrail<Queryable>;
  batchSize: number;
  /**
   * How long after the rotation's start to wait before re-wrapping: longer than any instance takes to poll for it
   * and finish what it began under the old key (default: 2 × KEY_ROTATION_POLL_MS + KMS_CALL_DEADLINE_MS + 1 s).
   */
  settleMs: number;
  /** Called after each batch, for a progress bar. */
  onProgress?: (progress: RotationProgress) => void;
  /** Told how long the wait for every instance will be, as it begins (not called when there is none left). */
  onSettle?: (waitMs: number) => void;
}

/** Re-wrap passes before giving up: keys still appearing under the old KMS key after that mean an instance lags. */
const MAX_REWRAP_PASSES = 3;

/**
 * Keys kept appearing under another KMS key than the rotation's after MAX_REWRAP_PASSES (an instance that has not
 * picked the rotation up?): the rotation stays open, and the same command finishes it later.
 */
export class RewrapIncompleteError extends Error {
  constructor(
    readonly generation: number,
    readonly left: number,
  ) {
    // No KMS key id: an AWS ARN holds a 12-digit account id, which the CLI would have to withhold as card-like.
    super(
      `${left} wrapped keys were still written under another KMS key than rotation ${generation}'s after ${MAX_REWRAP_PASSES} re-wrap ` +
        'passes (an instance that has not picked the rotation up?); run keys rotate again to finish the rotation',
    );
  }
}

const CLI = { tenantId: null, principal: 'cli' } as const;


export class KeyRotator {
  constructor(private readonly deps: KeyRotatorDeps) {}

  /**
   * Starts a rotation to `kmsKeyId` (or resumes the open one) and runs it to completion. Every instance polls for
   * the rotation row (every KEY_ROTATION_POLL_MS) and then wraps new keys under the new KMS key; `activate` makes
   * this process pick it up at once (keyRotation.sync). Until the others have, they may still write keys under the
   * old one, so nothing is re-wrapped before settleMs has passed since the rotation started.
   */
  async rotate(kmsKeyId: string, options: { reencryptCards: boolean }, activate: () => Promise<void>): Promise<KeyRotation> {
    const { store, audit } = this.deps;
    const canonical = await this.deps.kms.resolveKeyId(kmsKeyId);
    const { rotation, created } = await store.start(canonical, options.reencryptCards, (tx, begun) =>
      audit.recordWithin(tx, [
        { ...CLI, action: 'key.rotation.start', outcome: 'success', details: { generation: begun.generation, kms_key_id: canonical, reencrypt_cards: options.reencryptCards } },
      ]),
    );
    if (!created && rotation.kmsKeyId !== canonical) {
      // The key is not named: an AWS key ARN holds a 12-digit account id, which the CLI hides as a possible card number.
      throw new Error(`a rotation to another KMS key (generation ${rotation.generation}) is still in progress: run keys rotate again without another key to finish it`);
    }
    if (!created && options.reencryptCards && !rotation.reencryptCards) {
      // Resumed with --reencrypt-cards by an operator who wants every card re-sealed: not quietly dropped because
      // the run that began the rotation did not ask.
      await store.requireReencryption(rotation.generation, (tx) =>
        audit.recordWithin(tx, [
          { ...CLI, action: 'key.rotation.reencrypt_requested', outcome: 'success', details: { generation: rotation.generation, kms_key_id: rotation.kmsKeyId } },
        ]),
      );
      rotation.reencryptCards = true;
    }
    await activate();
    await this.settle(rotation);
    // Events of steps that change no state of their own wait for the next change, and commit with it.
    const pending: AuditInput[] = [];
    if (rotation.state === 'rewrapping') {
      const rewrapped = { ...CLI, action: 'key.rotation.rewrap', outcome: 'success', details: { generation: rotation.generation, rewrapped: await this.rewrapAll(rotation) } } as const;
      if (rotation.reencryptCards) {
        await store.advance(rotation.generation, 'rewrapping', 'reencrypting', (tx) => audit.recordWithin(tx, [rewrapped]));
        rotation.state = 'reencrypting';
      } else {
        pending.push(rewrapped);
      }
    }
    if (rotation.reencryptCards) {
      const reencrypted = await this.reencryptCards(rotation);
      // Webhook signing secrets are sealed under the same data keys: re-sealed too, so no old data key stays in use.
      const webhookSecrets = await this.resealWebhookSecrets(rotation);
      pending.push({ ...CLI, action: 'key.rotation.reencrypt', outcome: 'success', details: { generation: rotation.generation, reencrypted, webhook_secrets: webhookSecrets } });
    }
    return store.advance(rotation.generation, rotation.state, 'completed', (tx, done) =>
      audit.recordWithin(tx, [
        ...pending,
        { ...CLI, action: 'key.rotation.complete', outcome: 'success', details: { generation: done.generation, kms_key_id: done.kmsKeyId, rewrapped: done.rewrapped, reencrypted: done.reencrypted } },
      ]),
    );
  }

  /**
   * Aborts the rotation in progress while it has re-wrapped nothing: every instance goes back to the KMS key it wrapped
   * new keys under before (the latest rotation not aborted, or the configured key) within a poll, `activate` making
   * this process do so at once. Waits settleMs from the abort, as a rotation waits from its start, then counts the
   * wrapped keys instances wrote under the aborted KMS key meanwhile: they open only with it, until a later rotation
   * re-wraps them.
   */
  async abort(activate: () => Promise<void>): Promise<{ rotation: KeyRotation; writtenUnderAborted: number }> {
    const { store, audit } = this.deps;
    const aborted = await store.abort((tx, rotation) =>
      audit.recordWithin(tx, [
        { ...CLI, action: 'key.rotation.abort', outcome: 'success', details: { generation: rotation.generation, kms_key_id: rotation.kmsKeyId } },
      ]),
    );
    if (!aborted) {
      const open = await store.open();
      throw new Error(
        open
          ? `key rotation ${open.generation} has re-wrapped keys already and cannot be aborted: finish it with keys rotate (then rotate again to the key you want)`
          : 'no key rotation is in progress',
      );
    }
    await activate();
    const remaining = this.deps.settleMs - (await store.sinceStartMs(aborted.generation, 'finished'));
    if (remaining > 0) {
      this.deps.onSettle?.(remaining);
      await sleep(remaining);
    }
    return { rotation: aborted, writtenUnderAborted: await store.countWrappedUnder(aborted.kmsKeyId) };
  }

  /** Until every instance has polled since the rotation started (by the database's clock: a resumed one waits no more). */
  private async settle(rotation: KeyRotation): Promise<void> {
    const remaining = this.deps.settleMs - (await this.deps.store.sinceStartMs(rotation.generation));
    if (remaining <= 0) return;
    this.deps.onSettle?.(remaining);
    await sleep(remaining);
  }

  /**
   * Every wrapped key in every table, re-wrapped under the rotation's key in batches, table by table; then counted
   * again, and the pass repeated if a key was written under another KMS key meanwhile (a request in flight). Returns
   * how many were re-wrapped in this rotation.
   */
  private async rewrapAll(rotation: KeyRotation): Promise<number> {
    const { store } = this.deps;
    let done = rotation.rewrapped;
    let left = await store.countNotWrappedUnder(rotation.kmsKeyId);
    for (let pass = 1; left > 0; pass++) {
      if (pass > MAX_REWRAP_PASSES) throw new RewrapIncompleteError(rotation.generation, left);
      done = await this.rewrapPass(rotation, done, done + left);
      left = await store.countNotWrappedUnder(rotation.kmsKeyId);
    }
    return done;
  }

  /** One pass over every table; returns the running count of keys re-wrapped. */
  private async rewrapPass(rotation: KeyRotation, done: number, total: number): Promise<number> {
    const { store, kms, batchSize } = this.deps;
    for (const table of WRAPPED_TABLE_NAMES) {
      // A key left behind (replaced meanwhile) is counted after the pass, and the pass repeated if it needs to be.
      let after: string | undefined;
      for (;;) {
        const rows = await store.notWrappedUnder(table, rotation.kmsKeyId, batchSize, after);
        if (rows.length === 0) break;
        after = rows[rows.length - 1]!.id;
        // Re-wrapped by the KMS first, then replaced in one short transaction that an abort cannot overlap.
        const batch = [];
        for (const row of rows) batch.push({ row, rewrapped: await kms.reEncrypt(row.wrapped, row.context, rotation.kmsKeyId) });
        done += await store.replaceWrapped(rotation.generation, batch);
        this.deps.onProgress?.({ phase: 'rewrap', done, total: Math.max(total, done) });
      }
    }
    return done;
  }

  /**
   * Every card sealed under a data key generated before the rotation, opened and sealed again under a new data key:
   * one another KMS key generated (also after the start, by an instance that had not yet polled), or an older one.
   * Returns how many were re-sealed in this rotation.
   */
  private async reencryptCards(rotation: KeyRotation): Promise<number> {
    const { store, crypto, batchSize } = this.deps;
    const total = rotation.reencrypted + (await store.countSealedBefore(rotation));
    let done = rotation.reencrypted;
    let after: string | undefined;
    for (;;) {
      const cards = await store.sealedBefore(rotation, batchSize, after);
      if (cards.length === 0) {
        // A card changed under this pass (and still sealed under an old key) is read again by another.
        if (after === undefined || (await store.countSealedBefore(rotation)) === 0) break;
        after = undefined;
        continue;
      }
      after = cards[cards.length - 1]!.id;
      let replaced = 0;
      for (const card of cards) {
        const secret = await crypto.open(card.tenantId, card.token, card.sealed);
        if (await store.replaceSealed(card, await crypto.seal(card.tenantId, card.token, secret))) replaced += 1;
      }
      await store.addProgress(rotation.generation, { reencrypted: replaced });
      done += replaced;
      this.deps.onProgress?.({ phase: 'reencrypt', done, total: Math.max(total, done) });
    }
    return done;
  }

  /**
   * Every webhook signing secret sealed under a data key generated before the rotation, opened and sealed again
   * under a new one, bound to its endpoint as before. Returns how many this run re-sealed.
   */
  private async resealWebhookSecrets(rotation: KeyRotation): Promise<number> {
    const { store, crypto, batchSize } = this.deps;
    let done = 0;
    let after: string | undefined;
    for (;;) {
      const secrets = await store.secretsSealedBefore(rotation, batchSize, after);
      if (secrets.length === 0) {
        // A secret changed under this pass and still sealed under an old key is read again by another.
        if (after === undefined || (await store.countSecretsSealedBefore(rotation)) === 0) break;
        after = undefined;
        continue;
      }
      after = secrets[secrets.length - 1]!.id;
      for (const secret of secrets) {
        const opened = await crypto.openWebhookSecret(secret.tenantId, secret.id, secret.sealed);
        if (await store.replaceSealedSecret(secret, await crypto.sealWebhookSecret(secret.tenantId, secret.id, opened))) done += 1;
      }
    }
    return done;
  }
}
