// Plaintext data keys in memory only, bounded by age, number of uses and number of entries (LRU).

export interface KeyCacheLimits {
  maxAgeMs: number;
  maxUses: number;
  maxEntries: number;
}

interface Entry {
  key: Buffer;
  createdAt: number;
  uses: number;
}

export class KeyCache {
  readonly #entries = new Map<string, Entry>();
  #hits = 0;
  #misses = 0;

  constructor(
    private readonly limits: KeyCacheLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns the key and counts one use, or undefined when absent or past a limit (then it is dropped). */
  use(id: string): Buffer | undefined {
    const entry = this.#entries.get(id);
    if (!entry || this.#spent(entry)) {
      if (entry) this.#entries.delete(id);
      this.#misses += 1;
      return undefined;
    }
    entry.uses += 1;
    // Re-insert to mark as most recently used.
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    this.#hits += 1;
    return entry.key;
  }

  put(id: string, key: Buffer): void {
    this.#entries.delete(id);
    this.#entries.set(id, { key, createdAt: this.now(), uses: 0 });
    while (this.#entries.size > this.limits.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  /** Drops every entry past its age or uses, whether or not anything asks for it again (an idle tenant's key). */
  dropExpired(): void {
    for (const [id, entry] of this.#entries) if (this.#spent(entry)) this.#entries.delete(id);
  }

  #spent(entry: Entry): boolean {
    return this.now() - entry.createdAt >= this.limits.maxAgeMs || entry.uses >= this.limits.maxUses;
  }

  delete(id: string): void {
    this.#entries.delete(id);
  }

  get size(): number {
    return this.#entries.size;
  }

  stats(): { hits: number; misses: number; size: number } {
    return { hits: this.#hits, misses: this.#misses, size: this.#entries.size };
  }
}
