// KMS key rotation without downtime: new data keys under the new KMS key once every instance has polled for the
// rotation, every existing wrapped key re-wrapped with ReEncrypt (its plaintext never in the vault with AWS KMS),
// and optionally every card re-sealed.
//
// Each step is resumable: a rotation row records the generation and progress; re-running the command picks up the
// open rotation, and every row is replaced only if it is still what was read.
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditTrail, CardCrypto, Kms } from '../domain/ports';
import { WRAPPED_TABLE_NAMES, type KeyRotation, type PgKeyRotationStore } from '../store/key-rotation-store';

export interface RotationProgress {
  phase: 'rewrap' | 'reencrypt';
  done: number;
  total: number;
}

export interface KeyRotatorDeps {
  kms: Kms;
  store: PgKeyRotationStore;
  crypto: Pick<CardCrypto, 'open' | 'seal'>;
  audit: AuditTrail;
  batchSize: number;
  /**
   * How long after the rotation's start to wait before re-wrapping: longer than any instance takes to poll for it
   * and finish what it began under the old key (default: 2 × KEY_ROTATION_POLL_MS + 1 s).
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
    const canonical = await this.deps.kms.resolveKeyId(kmsKeyId);
    const { rotation, created } = await this.deps.store.start(canonical, options.reencryptCards);
    if (!created && rotation.kmsKeyId !== canonical) {
      // The key is not named: an AWS key ARN holds a 12-digit account id, which the CLI hides as a possible card number.
      throw new Error(`a rotation to another KMS key (generation ${rotation.generation}) is still in progress: run keys rotate again without another key to finish it`);
    }
    if (!created && options.reencryptCards && !rotation.reencryptCards) {
      // Resumed with --reencrypt-cards by an operator who wants every card re-sealed: not quietly dropped because
      // the run that began the rotation did not ask.
      await this.deps.store.requireReencryption(rotation.generation);
      rotation.reencryptCards = true;
    }
    await activate();
    if (created) {
      await this.deps.audit.record({ ...CLI, action: 'key.rotation.start', outcome: 'success', details: { generation: rotation.generation, kms_key_id: canonical, reencrypt_cards: options.reencryptCards } });
    }
    await this.settle(rotation);
    if (rotation.state === 'rewrapping') await this.rewrapAll(rotation);
    if (rotation.reencryptCards && rotation.state !== 'completed') await this.reencryptCards(rotation);
    await this.deps.store.setState(rotation.generation, 'completed');
    const done = (await this.deps.store.latest())!;
    await this.deps.audit.record({ ...CLI, action: 'key.rotation.complete', outcome: 'success', details: { generation: done.generation, kms_key_id: done.kmsKeyId, rewrapped: done.rewrapped, reencrypted: done.reencrypted } });
    return done;
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
   * again, and the pass repeated if a key was written under another KMS key meanwhile (a request in flight).
   */
  private async rewrapAll(rotation: KeyRotation): Promise<void> {
    const { store } = this.deps;
    let done = rotation.rewrapped;
    let left = await store.countNotWrappedUnder(rotation.kmsKeyId);
    for (let pass = 1; left > 0; pass++) {
      if (pass > MAX_REWRAP_PASSES) throw new RewrapIncompleteError(rotation.generation, left);
      done = await this.rewrapPass(rotation, done, done + left);
      left = await store.countNotWrappedUnder(rotation.kmsKeyId);
    }
    await this.deps.audit.record({ ...CLI, action: 'key.rotation.rewrap', outcome: 'success', details: { generation: rotation.generation, rewrapped: done } });
    await store.setState(rotation.generation, rotation.reencryptCards ? 'reencrypting' : 'completed');
    rotation.state = rotation.reencryptCards ? 'reencrypting' : 'completed';
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
        let replaced = 0;
        for (const row of rows) {
          const rewrapped = await kms.reEncrypt(row.wrapped, row.context, rotation.kmsKeyId);
          if (await store.replaceWrapped(row, rewrapped)) replaced += 1;
        }
        await store.addProgress(rotation.generation, { rewrapped: replaced });
        done += replaced;
        this.deps.onProgress?.({ phase: 'rewrap', done, total: Math.max(total, done) });
      }
    }
    return done;
  }

  /**
   * Every card sealed under a data key generated before the rotation, opened and sealed again under a new data key:
   * one another KMS key generated (also after the start, by an instance that had not yet polled), or an older one.
   */
  private async reencryptCards(rotation: KeyRotation): Promise<void> {
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
    await this.deps.audit.record({ ...CLI, action: 'key.rotation.reencrypt', outcome: 'success', details: { generation: rotation.generation, reencrypted: done } });
  }
}
