// KMS key rotation without downtime: new data keys under the new KMS key at once, every existing wrapped key
// re-wrapped with ReEncrypt (its plaintext never in the vault with AWS KMS), and optionally every card re-sealed.
//
// Each step is resumable: a rotation row records the generation and progress; re-running the command picks up the
// open rotation, and every row is replaced only if it is still what was read.
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
  /** Called after each batch, for a progress bar. */
  onProgress?: (progress: RotationProgress) => void;
}

const CLI = { tenantId: null, principal: 'cli' } as const;

export class KeyRotator {
  constructor(private readonly deps: KeyRotatorDeps) {}

  /**
   * Starts a rotation to `kmsKeyId` (or resumes the open one) and runs it to completion. New data keys are wrapped
   * under the new key as soon as the rotation row exists: every instance polls for it (every 5 s). `activate` makes
   * this process pick it up at once (keyRotation.sync).
   */
  async rotate(kmsKeyId: string, options: { reencryptCards: boolean }, activate: () => Promise<void>): Promise<KeyRotation> {
    const canonical = await this.deps.kms.resolveKeyId(kmsKeyId);
    const { rotation, created } = await this.deps.store.start(canonical, options.reencryptCards);
    if (!created && rotation.kmsKeyId !== canonical) {
      throw new Error(`a rotation to ${rotation.kmsKeyId} is still in progress: run keys rotate again without another key to finish it`);
    }
    // This process seals with the new key from here on, as every instance will within its next poll.
    await activate();
    if (created) {
      await this.deps.audit.record({ ...CLI, action: 'key.rotation.start', outcome: 'success', details: { generation: rotation.generation, kms_key_id: canonical, reencrypt_cards: options.reencryptCards } });
    }
    if (rotation.state === 'rewrapping') await this.rewrapAll(rotation);
    if (rotation.reencryptCards && rotation.state !== 'completed') await this.reencryptCards(rotation);
    await this.deps.store.setState(rotation.generation, 'completed');
    const done = (await this.deps.store.latest())!;
    await this.deps.audit.record({ ...CLI, action: 'key.rotation.complete', outcome: 'success', details: { generation: done.generation, kms_key_id: done.kmsKeyId, rewrapped: done.rewrapped, reencrypted: done.reencrypted } });
    return done;
  }

  /** Every wrapped key in every table, re-wrapped under the rotation's key in batches. */
  private async rewrapAll(rotation: KeyRotation): Promise<void> {
    const { store, kms, batchSize } = this.deps;
    const total = rotation.rewrapped + (await store.countNotWrappedUnder(rotation.kmsKeyId));
    let done = rotation.rewrapped;
    for (const table of WRAPPED_TABLE_NAMES) {
      for (;;) {
        const rows = await store.notWrappedUnder(table, rotation.kmsKeyId, batchSize);
        if (rows.length === 0) break;
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
    await this.deps.audit.record({ ...CLI, action: 'key.rotation.rewrap', outcome: 'success', details: { generation: rotation.generation, rewrapped: done } });
    await store.setState(rotation.generation, rotation.reencryptCards ? 'reencrypting' : 'completed');
    rotation.state = rotation.reencryptCards ? 'reencrypting' : 'completed';
  }

  /** Every card sealed under a data key older than the rotation, opened and sealed again under a new data key. */
  private async reencryptCards(rotation: KeyRotation): Promise<void> {
    const { store, crypto, batchSize } = this.deps;
    const total = rotation.reencrypted + (await store.countSealedBefore(rotation.startedAt));
    let done = rotation.reencrypted;
    for (;;) {
      const cards = await store.sealedBefore(rotation.startedAt, batchSize);
      if (cards.length === 0) break;
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
