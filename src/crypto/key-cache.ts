// Plaintext data keys in memory only, bounded by age, number of uses and number of entries (LRU); each key's bytes
// are overwritten with zeros once it has left the cache and the last use of it in flight has ended.

export interface KeyCacheLimits {
  maxAgeMs: number;
  maxUses: number;
  maxEntries: number;
}

/** A key taken for one use (or one sealer): its bytes stay intact until released, even if it leaves the cache. */
export interface KeyLease {
  readonly key: Buffer;
  /** Ends this use; the key is zeroed now if it has left the cache and no other use is in flight. Idempotent. */
  release(): void;
}

interface Entry {
  key: Buffer;
  createdAt: number;
  uses: number;
  /** Leases not yet released. */
  leased: number;
  /** Out of the cache: zeroed as soon as nothing leases it. */
  dropped: boolean;
}

export class KeyCache {
  readonly #entries = new Map<string, Entry>();
  #hits = 0;
  #misses = 0;

  /** The cache owns each key it is given: nothing else may zero it, and it is zeroed once dropped and unleased. */
  constructor(
    private readonly limits: KeyCacheLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes the key for one use and counts it, or undefined when absent or past a limit (then it is dropped). The key
   * is not zeroed before the lease is released, whatever leaves the cache meanwhile.
   */
  lease(id: string): KeyLease | undefined {
    const entry = this.#entries.get(id);
    if (!entry || this.#spent(entry)) {
      if (entry) this.#drop(id, entry);
      this.#misses += 1;
      return undefined;
    }
    entry.uses += 1;
    // Re-insert to mark as most recently used.
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    this.#hits += 1;
    entry.leased += 1;
    let released = false;
    return {
      key: entry.key,
      release: () => {
        if (released) return;
        released = true;
        entry.leased -= 1;
        this.#wipeIfIdle(entry);
      },
    };
  }

  put(id: string, key: Buffer): void {
    const previous = this.#entries.get(id);
    this.#entries.delete(id);
    if (previous?.key === key) {
      // The same bytes put again live again (and stay whole for the leases already out).
      Object.assign(previous, { createdAt: this.now(), uses: 0 });
      this.#entries.set(id, previous);
    } else {
      if (previous) this.#drop(id, previous);
      this.#entries.set(id, { key, createdAt: this.now(), uses: 0, leased: 0, dropped: false });
    }
    while (this.#entries.size > this.limits.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#drop(oldest, this.#entries.get(oldest)!);
    }
  }

  /** Drops every entry past its age or uses, whether or not anything asks for it again (an idle tenant's key). */
  dropExpired(): void {
    for (const [id, entry] of this.#entries) if (this.#spent(entry)) this.#drop(id, entry);
  }

  #spent(entry: Entry): boolean {
    return this.now() - entry.createdAt >= this.limits.maxAgeMs || entry.uses >= this.limits.maxUses;
  }

  delete(id: string): void {
    const entry = this.#entries.get(id);
    if (entry) this.#drop(id, entry);
  }

  #drop(id: string, entry: Entry): void {
    this.#entries.delete(id);
    entry.dropped = true;
    this.#wipeIfIdle(entry);
  }

  #wipeIfIdle(entry: Entry): void {
    if (entry.dropped && entry.leased === 0) entry.key.fill(0);
  }

  get size(): number {
    return this.#entries.size;
  }

  stats(): { hits: number; misses: number; size: number } {
    return { hits: this.#hits, misses: this.#misses, size: this.#entries.size };
  }
}
