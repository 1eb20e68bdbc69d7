// Replaces a tenant's fingerprint (HMAC) key, generation g → g+1, with live traffic and without ever letting one
// number get two tokens: prepare (g+1 written beside g, every card backfilled), switch (looked up by g+1, g still
// written), retire (g no longer written; its column cleared and its key destroyed). domain/fingerprints.ts has the
// rules instances follow in each state; this command moves the states, waiting after each change until every
// instance has re-read them (settleMs > twice FINGERPRINT_VIEW_TTL_MS). Resumable: the states, the waits' start
// times and every card write are in PostgreSQL, so running it again picks up where it stopped.
import { setTimeout as sleep } from 'node:timers/promises';
import { parityOf } from '../domain/fingerprints';
import type { AuditTrail, CardCrypto, Kms } from '../domain/ports';
import type { FingerprintKeyRow, PgFingerprintRotationStore } from '../store/fingerprint-rotation-store';
import { hmacFingerprint } from './card-crypto';

export interface FingerprintRotationProgress {
  phase: 'backfill' | 'clear';
  done: number;
  total: number;
}

export interface FingerprintRotatorDeps {
  kms: Kms;
  store: PgFingerprintRotationStore;
  crypto: Pick<CardCrypto, 'open'>;
  audit: AuditTrail;
  batchSize: number;
  /** How long to wait after each state change before relying on it (default: 2 × the view TTL + 1 s). */
  settleMs: number;
  /** Called after each batch, for a progress bar. */
  onProgress?: (progress: FingerprintRotationProgress) => void;
}

export interface FingerprintRotationResult {
  tenantId: string;
  /** The tenant's current generation once done. */
  generation: number;
  backfilled: number;
  cleared: number;
}

/** Retiring the old key would break replays of idempotency records it keyed: run the command again once they expire. */
export class RetireBlockedError extends Error {
  constructor(
    readonly generation: number,
    readonly records: number,
    readonly lastExpiresAt: Date,
  ) {
    super(
      `${records} unexpired idempotency records still use fingerprint-key generation ${generation} (the last expires at ` +
        `${lastExpiresAt.toISOString()}); run the command again after that to finish the rotation`,
    );
  }
}


export class FingerprintRotator {
  constructor(private readonly deps: FingerprintRotatorDeps) {}

  /** Starts a rotation of the tenant's fingerprint key, or resumes its open one, and runs it to the end. */
  async rotate(tenantId: string): Promise<FingerprintRotationResult> {
    const { store, audit } = this.deps;
    const cli = { tenantId, principal: 'cli' } as const;
    let keys = await store.liveKeys(tenantId);
    const from = current(keys).generation;
    if (keys.length === 1) {
      const generation = from + 1;
      const dataKey = await this.deps.kms.generateDataKey({ tenantId, purpose: 'fingerprint' });
      dataKey.plaintext.fill(0);
      if (!(await store.insertNext(tenantId, generation, dataKey.wrapped))) {
        throw new Error('another fingerprint-key rotation of this tenant started meanwhile; run the command again to resume it');
      }
      await audit.record({ ...cli, action: 'key.fingerprint_rotation.start', outcome: 'success', details: { from_generation: from, generation, kms_key_id: dataKey.wrapped.kmsKeyId } });
      keys = await store.liveKeys(tenantId);
    }

    let other = rotating(keys);
    if (other?.state === 'next') {
      await this.settle(other);
      const backfilled = await this.backfill(tenantId, other);
      await audit.record({ ...cli, action: 'key.fingerprint_rotation.backfill', outcome: 'success', details: { generation: other.generation, backfilled } });
      await store.switchKeys(tenantId, current(keys).generation, other.generation);
      await audit.record({ ...cli, action: 'key.fingerprint_rotation.switch', outcome: 'success', details: { generation: other.generation, previous_generation: current(keys).generation } });
      keys = await store.liveKeys(tenantId);
      other = rotating(keys);
    }
    if (other?.state === 'previous') {
      await this.settle(other);
      // Instances in switch key new digests with the new generation already; none with the old one remain.
      const pending = await store.digestsKeyedBy(tenantId, other.generation);
      if (pending.count > 0) throw new RetireBlockedError(other.generation, pending.count, pending.lastExpiresAt!);
      await store.setState(tenantId, other.generation, 'previous', 'retiring');
      await audit.record({ ...cli, action: 'key.fingerprint_rotation.retire', outcome: 'success', details: { generation: other.generation } });
      keys = await store.liveKeys(tenantId);
      other = rotating(keys);
    }
    if (other?.state === 'retiring') {
      await this.settle(other);
      const cleared = await this.clear(tenantId, other);
      await store.retireKey(tenantId, other.generation);
      const now = current(keys);
      await audit.record({
        ...cli,
        action: 'key.fingerprint_rotation.complete',
        outcome: 'success',
        details: { generation: now.generation, retired_generation: other.generation, backfilled: now.backfilled, cleared },
      });
    }
    const done = current(await store.liveKeys(tenantId));
    return { tenantId, generation: done.generation, backfilled: done.backfilled, cleared: (await this.retiredCleared(tenantId, done.generation - 1)) };
  }

  /** Until every instance has re-read the tenant's keys since this one's state changed. */
  private async settle(key: FingerprintKeyRow): Promise<void> {
    const remaining = this.deps.settleMs - key.sinceChangeMs;
    if (remaining > 0) await sleep(remaining);
  }

  /** Gives every live card the new generation's fingerprint, computed from its opened number. */
  private async backfill(tenantId: string, next: FingerprintKeyRow): Promise<number> {
    const { store, batchSize } = this.deps;
    const parity = parityOf(next.generation);
    const key = await this.deps.kms.decryptDataKey(next.wrapped, { tenantId, purpose: 'fingerprint' });
    try {
      let done = next.backfilled;
      let total = done + (await store.countUnfingerprinted(tenantId, parity));
      let after = '0';
      let setThisPass = 0;
      for (;;) {
        const cards = await store.unfingerprinted(tenantId, parity, after, batchSize);
        if (cards.length === 0) {
          const left = await store.countUnfingerprinted(tenantId, parity);
          if (left === 0) break;
          // Cards re-sealed or changed under this pass are read again; a pass that sets none would never end.
          if (setThisPass === 0 && after === '0') throw new Error(`${left} cards could not be given the new fingerprint; run the command again`);
          total = Math.max(total, done + left);
          after = '0';
          setThisPass = 0;
          continue;
        }
        let set = 0;
        for (const card of cards) {
          const secret = await this.deps.crypto.open(tenantId, card.token, card.sealed);
          if (await store.setFingerprint(tenantId, card, parity, hmacFingerprint(key, secret.pan))) set += 1;
        }
        after = cards[cards.length - 1]!.id;
        setThisPass += set;
        await store.addProgress(tenantId, next.generation, { backfilled: set });
        done += set;
        this.deps.onProgress?.({ phase: 'backfill', done, total: Math.max(total, done) });
      }
      this.deps.onProgress?.({ phase: 'backfill', done, total: done });
      return done;
    } finally {
      key.fill(0);
    }
  }

  /** Empties the retiring generation's column, so the generation after next can use it. */
  private async clear(tenantId: string, retiring: FingerprintKeyRow): Promise<number> {
    const { store, batchSize } = this.deps;
    const parity = parityOf(retiring.generation);
    let done = retiring.cleared;
    const total = done + (await store.countFingerprinted(tenantId, parity));
    let after: string | undefined;
    for (;;) {
      const { cleared, lastId } = await store.clearColumn(tenantId, parity, batchSize, after);
      if (lastId === undefined) {
        // A card given this column behind the pass (a tokenize meanwhile) is cleared by another, from the start.
        if (after === undefined || (await store.countFingerprinted(tenantId, parity)) === 0) break;
        after = undefined;
        continue;
      }
      after = lastId;
      await store.addProgress(tenantId, retiring.generation, { cleared });
      done += cleared;
      this.deps.onProgress?.({ phase: 'clear', done, total: Math.max(total, done) });
    }
    this.deps.onProgress?.({ phase: 'clear', done, total: done });
    return done;
  }

  private async retiredCleared(tenantId: string, generation: number): Promise<number> {
    return generation >= 1 ? this.deps.store.clearedOf(tenantId, generation) : 0;
  }
}

function current(keys: FingerprintKeyRow[]): FingerprintKeyRow {
  const key = keys.find((k) => k.state === 'current');
  if (!key) throw new Error('the tenant has no current fingerprint key');
  return key;
}

function rotating(keys: FingerprintKeyRow[]): FingerprintKeyRow | undefined {
  return keys.find((k) => k.state !== 'current');
}
