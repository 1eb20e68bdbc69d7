// Which data key to use: the newest per tenant for sealing, any stored one for opening; KMS calls are single-flight.
import type { AuditTrail, DataKeyStore, Kms, Tenant } from '../domain/ports';
import { VaultError } from '../errors';
import { KeyCache, type KeyCacheLimits } from './key-cache';

const openingId = (tenantId: string, dataKeyId: string) => `dk:${tenantId}:${dataKeyId}`;

export class Keyring {
  /** Keys used for opening and fingerprinting, by data-key id or `fp:<tenant>`. */
  readonly #cache: KeyCache;
  /** The data key each tenant seals with now; rotated by the same limits. */
  readonly #current: KeyCache;
  readonly #currentIds = new Map<string, string>();
  readonly #inflight = new Map<string, Promise<Buffer>>();
  /** The key-rotation generation the current sealing keys belong to (see useGeneration). */
  #generation = 0;

  constructor(
    private readonly kms: Kms,
    private readonly store: DataKeyStore,
    limits: KeyCacheLimits,
    now: () => number = Date.now,
    private readonly audit?: AuditTrail,
    /** Told whether each opening or fingerprint key was cached (metrics); never given a key or an id. */
    private readonly onLookup?: (hit: boolean) => void,
  ) {
    this.#cache = new KeyCache(limits, now);
    this.#current = new KeyCache(limits, now);
  }

  /** The key to seal a new ciphertext with; a fresh data key once the current one is past its age or uses. */
  async sealingKey(tenantId: string): Promise<{ id: string; key: Buffer }> {
    const id = this.#currentIds.get(tenantId);
    const key = id ? this.#current.use(tenantId) : undefined;
    if (id && key) return { id, key };
    await this.singleFlight(`new:${tenantId}`, async () => {
      const dataKey = await this.kms.generateDataKey({ tenantId, purpose: 'card-data' });
      const stored = await this.store.insertDataKey({ tenantId, purpose: 'card-data', wrapped: dataKey.wrapped });
      await this.audit?.record({
        tenantId,
        principal: 'system',
        action: 'key.data_key.create',
        outcome: 'success',
        details: { data_key_id: stored.id, purpose: 'card-data', kms_key_id: dataKey.wrapped.kmsKeyId },
      });
      this.#current.put(tenantId, dataKey.plaintext);
      this.#currentIds.set(tenantId, stored.id);
      this.#cache.put(openingId(tenantId, stored.id), dataKey.plaintext);
      return dataKey.plaintext;
    });
    return this.sealingKey(tenantId);
  }

  /** The key a stored ciphertext was sealed with, unwrapped by the KMS on a cache miss. */
  async openingKey(tenantId: string, dataKeyId: string): Promise<Buffer> {
    // Cached and in-flight keys are addressed by tenant too: another tenant's key is never handed out.
    const id = openingId(tenantId, dataKeyId);
    const cached = this.#cache.use(id);
    this.onLookup?.(cached !== undefined);
    if (cached) return cached;
    return this.singleFlight(id, async () => {
      const stored = await this.store.findDataKey(dataKeyId);
      if (!stored || stored.tenantId !== tenantId) throw new VaultError('internal_error', 'a data key is missing');
      const key = await this.kms.decryptDataKey(stored.wrapped, { tenantId, purpose: 'card-data' });
      this.#cache.put(id, key);
      return key;
    });
  }

  async fingerprintKey(tenant: Tenant): Promise<Buffer> {
    const id = `fp:${tenant.id}`;
    const cached = this.#cache.use(id);
    this.onLookup?.(cached !== undefined);
    if (cached) return cached;
    return this.singleFlight(id, async () => {
      const key = await this.kms.decryptDataKey(tenant.fingerprintKey, { tenantId: tenant.id, purpose: 'fingerprint' });
      this.#cache.put(id, key);
      return key;
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

  stats(): { hits: number; misses: number; size: number } {
    return this.#cache.stats();
  }

  private singleFlight(id: string, work: () => Promise<Buffer>): Promise<Buffer> {
    let pending = this.#inflight.get(id);
    if (!pending) {
      pending = work().finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, pending);
    }
    return pending;
  }
}
