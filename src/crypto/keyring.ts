// Which data key to use: the newest per tenant for sealing, any stored one for opening; KMS calls are single-flight.
// Also each tenant's fingerprint keys by generation, re-read from the database once they are FINGERPRINT_VIEW_TTL_MS old.
import { viewOf, type FingerprintView } from '../domain/fingerprints';
import type { AuditTrail, DataKeyStore, FingerprintKeyStore, Kms, WrappedKey } from '../domain/ports';
import { VaultError } from '../errors';
import { KeyCache, type KeyCacheLimits, type KeyLease } from './key-cache';

const openingId = (tenantId: string, dataKeyId: string) => `dk:${tenantId}:${dataKeyId}`;
const fingerprintId = (tenantId: string, generation: number) => `fp:${tenantId}:${generation}`;

/**
 * How old an instance's view of a tenant's fingerprint keys may be. `keys rotate-fingerprint` waits longer than
 * this (twice, plus a second) after each state change, so no instance is ever more than one step behind.
 */
export const FINGERPRINT_VIEW_TTL_MS = 5000;

interface FingerprintKeySet {
  view: FingerprintView;
  wrapped: Map<number, WrappedKey>;
  /** When the read began: the view is no older than this. */
  readAt: number;
}

export class Keyring {
  /** Keys used for opening and fingerprinting, by `dk:<tenant>:<data-key id>` or `fp:<tenant>:<generation>`. */
  readonly #cache: KeyCache;
  /** The data key each tenant seals with now; rotated by the same limits. */
  readonly #current: KeyCache;
  readonly #currentIds = new Map<string, string>();
  readonly #inflight = new Map<string, Promise<unknown>>();
  readonly #fingerprintKeys = new Map<string, FingerprintKeySet>();
  /** The key-rotation generation the current sealing keys belong to (see useGeneration). */
  #generation = 0;

  constructor(
    private readonly kms: Kms,
    private readonly store: DataKeyStore & FingerprintKeyStore,
    private readonly limits: KeyCacheLimits,
    private readonly now: () => number = Date.now,
    private readonly audit?: AuditTrail,
    /** Told whether each opening or fingerprint key was cached (metrics); never given a key or an id. */
    private readonly onLookup?: (hit: boolean) => void,
    private readonly fingerprintViewMs = FINGERPRINT_VIEW_TTL_MS,
  ) {
    this.#cache = new KeyCache(limits, now);
    this.#current = new KeyCache(limits, now);
  }

  /**
   * The key to seal a new ciphertext with, leased: released, it is zeroed once it leaves the cache. A fresh data key
   * once the current one is past its age or uses.
   */
  async sealingKey(tenantId: string): Promise<{ id: string } & KeyLease> {
    const id = this.#currentIds.get(tenantId);
    const lease = id ? this.#current.lease(tenantId) : undefined;
    if (id && lease) return { id, key: lease.key, release: lease.release };
    await this.singleFlight(`new:${tenantId}`, async () => {
      const generation = this.#generation;
      const dataKey = await this.kms.generateDataKey({ tenantId, purpose: 'card-data' });
      let stored: { id: string };
      try {
        stored = await this.store.insertDataKey({ tenantId, purpose: 'card-data', wrapped: dataKey.wrapped });
        await this.audit?.record({
          tenantId,
          principal: 'system',
          action: 'key.data_key.create',
          outcome: 'success',
          details: { data_key_id: stored.id, purpose: 'card-data', kms_key_id: dataKey.wrapped.kmsKeyId },
        });
      } catch (err) {
        dataKey.plaintext.fill(0);
        throw err;
      }
      // Each cache zeroes the keys it drops, at its own time: the opening cache gets a copy of its own.
      this.#cache.put(openingId(tenantId, stored.id), Buffer.from(dataKey.plaintext));
      // Begun before a key rotation reached this instance, it was wrapped under the old KMS key: it opens what
      // it may already have sealed, but seals nothing more. The next call takes a key under the new one.
      if (this.#generation === generation) {
        this.#current.put(tenantId, dataKey.plaintext);
        this.#currentIds.set(tenantId, stored.id);
      } else {
        dataKey.plaintext.fill(0);
      }
    });
    return this.sealingKey(tenantId);
  }

  /**
   * Counts one more seal with the key sealingKey handed out as `id` (a sealer's second and later seals), while it
   * is still the tenant's current one. Reaching no store, it may run inside a transaction; a key this takes past its
   * limits is replaced at the next sealingKey.
   */
  countSeal(tenantId: string, id: string): void {
    if (this.#currentIds.get(tenantId) === id) this.#current.lease(tenantId)?.release();
  }

  /**
   * The key a stored ciphertext was sealed with, leased (see sealingKey), unwrapped by the KMS on a cache miss.
   * `dataKeys`: where a missing key is read, in place of the keyring's store: a transaction's own, as a pool read
   * would wait for a connection that transaction holds (on PGlite, for the transaction itself).
   */
  async openingKey(tenantId: string, dataKeyId: string, dataKeys: Pick<DataKeyStore, 'findDataKey'> = this.store): Promise<KeyLease> {
    // Cached and in-flight keys are addressed by tenant too: another tenant's key is never handed out.
    const id = openingId(tenantId, dataKeyId);
    const cached = this.#cache.lease(id);
    this.onLookup?.(cached !== undefined);
    if (cached) return cached;
    const load = async () => {
      const stored = await dataKeys.findDataKey(dataKeyId);
      if (!stored || stored.tenantId !== tenantId) throw new VaultError('internal_error', 'a data key is missing');
      this.#cache.put(id, await this.kms.decryptDataKey(stored.wrapped, { tenantId, purpose: 'card-data' }));
    };
    // Read through a transaction, the key is loaded apart: a load in flight on the pool may be waiting for it.
    return this.leaseLoaded(id, () => (dataKeys === this.store ? this.singleFlight(id, load) : load()));
  }

  /** Which fingerprint generations this instance writes and looks up by for the tenant; at most fingerprintViewMs old. */
  async fingerprintView(tenantId: string): Promise<FingerprintView> {
    return (await this.fingerprintKeys(tenantId)).view;
  }

  /** The tenant's HMAC key of one generation, while it is live (not retired); leased (see sealingKey). */
  async fingerprintKey(tenantId: string, generation: number): Promise<KeyLease> {
    const id = fingerprintId(tenantId, generation);
    const cached = this.#cache.lease(id);
    this.onLookup?.(cached !== undefined);
    if (cached) return cached;
    return this.leaseLoaded(id, () =>
      this.singleFlight(id, async () => {
        const wrapped = (await this.fingerprintKeys(tenantId)).wrapped.get(generation);
        if (!wrapped) throw new VaultError('internal_error', 'a fingerprint key is missing');
        this.#cache.put(id, await this.kms.decryptDataKey(wrapped, { tenantId, purpose: 'fingerprint' }));
      }),
    );
  }

  /**
   * Loads a key into the cache and leases it from there: each waiter on one load takes its own lease. A key dropped
   * before a waiter took it (only a put or a delete between the load's end and the waiter's turn could) is loaded
   * again rather than used: dropped and unleased, it is already zeros.
   */
  private async leaseLoaded(id: string, load: () => Promise<void>): Promise<KeyLease> {
    for (;;) {
      await load();
      const lease = this.#cache.lease(id);
      if (lease) return lease;
    }
  }

  private async fingerprintKeys(tenantId: string): Promise<FingerprintKeySet> {
    const known = this.#fingerprintKeys.get(tenantId);
    if (known && this.now() - known.readAt < this.fingerprintViewMs) return known;
    return this.singleFlight(`fpv:${tenantId}`, async () => {
      const readAt = this.now();
      const keys = await this.store.liveFingerprintKeys(tenantId);
      const fresh: FingerprintKeySet = { view: viewOf(keys), wrapped: new Map(keys.map((k) => [k.generation, k.wrapped])), readAt };
      // A retired generation's key leaves memory as soon as this instance learns of it.
      for (const generation of known?.wrapped.keys() ?? []) {
        if (!fresh.wrapped.has(generation)) this.#cache.delete(fingerprintId(tenantId, generation));
      }
      this.#fingerprintKeys.delete(tenantId);
      this.#fingerprintKeys.set(tenantId, fresh);
      if (this.#fingerprintKeys.size > this.limits.maxEntries) this.#fingerprintKeys.delete(this.#fingerprintKeys.keys().next().value as string);
      return fresh;
    });
  }

  /**
   * A KMS key rotation (`cardvault keys rotate`) bumps the generation: every tenant's next seal then takes a new
   * data key, wrapped under the new KMS key. Keys for opening stay cached; they still open what they sealed.
   */
  useGeneration(generation: number): void {
    if (generation === this.#generation) return;
    this.#generation = generation;
    for (const tenantId of this.#currentIds.keys()) this.#current.delete(tenantId);
    this.#currentIds.clear();
  }

  /**
   * Forgets every key past its age or uses. A key is checked when asked for; one nobody asks for again (an idle
   * tenant's) would otherwise stay in memory until the process ends. keyRotation.sync runs this every poll.
   */
  dropExpired(): void {
    this.#cache.dropExpired();
    this.#current.dropExpired();
  }

  /** `size`: opening and fingerprint keys held; `sealing`: tenants' current sealing keys (each also an opening key). */
  stats(): { hits: number; misses: number; size: number; sealing: number } {
    return { ...this.#cache.stats(), sealing: this.#current.size };
  }

  private singleFlight<T>(id: string, work: () => Promise<T>): Promise<T> {
    let pending = this.#inflight.get(id) as Promise<T> | undefined;
    if (!pending) {
      pending = work().finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, pending);
    }
    return pending;
  }
}
