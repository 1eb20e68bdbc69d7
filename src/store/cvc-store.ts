// CVCs in Redis (shared by every instance) or, without REDIS_URL, in process memory; sealed, with a TTL.
import Redis from 'ioredis';
import type { CvcStore, SealedCard } from '../domain/ports';

const key = (tenantId: string, token: string) => `cardvault:cvc:${tenantId}:${token}`;

function encode(sealed: SealedCard): string {
  return JSON.stringify({ k: sealed.dataKeyId, i: sealed.iv.toString('base64'), t: sealed.tag.toString('base64'), c: sealed.ciphertext.toString('base64') });
}

function decode(value: string): SealedCard {
  const v = JSON.parse(value) as { k: string; i: string; t: string; c: string };
  return { dataKeyId: v.k, iv: Buffer.from(v.i, 'base64'), tag: Buffer.from(v.t, 'base64'), ciphertext: Buffer.from(v.c, 'base64') };
}

export class RedisCvcStore implements CvcStore {
  readonly #client: Redis;

  constructor(url: string) {
    // A command that failed stays failed: nothing unanswered is sent again after a reconnect. Otherwise a hold the
    // API reported as not held would land later with a fresh TTL (and, if the first write had landed, make one
    // CVC revealable twice), and a late GETDEL or DEL could remove a newer CVC.
    this.#client = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: 2000,
      commandTimeout: 500,
    });
    this.#client.on('error', () => undefined);
  }

  async hold(tenantId: string, token: string, sealed: SealedCard, ttlSeconds: number): Promise<void> {
    await this.#client.set(key(tenantId, token), encode(sealed), 'EX', ttlSeconds);
  }

  async take(tenantId: string, token: string): Promise<SealedCard | undefined> {
    const value = await this.#client.getdel(key(tenantId, token));
    return value === null ? undefined : decode(value);
  }

  async held(tenantId: string, token: string): Promise<boolean> {
    return (await this.#client.exists(key(tenantId, token))) === 1;
  }

  async discard(tenantId: string, token: string): Promise<void> {
    await this.#client.del(key(tenantId, token));
  }

  async close(): Promise<void> {
    this.#client.disconnect();
  }
}

/** How often the memory store drops expired CVCs while it holds any, besides on every call. */
const SWEEP_MS = 1000;

/**
 * The zero-setup default: one process, so memory is exact. Expired CVCs are dropped on every call and, while any is
 * held, every second: on an instance that stops receiving CVCs none stays in memory past its TTL for longer than that.
 */
export class MemoryCvcStore implements CvcStore {
  /**
   * In expiry order while the TTL is constant (it is: one CvcHolder, one CVC_TTL_SECONDS), so a sweep stops at the
   * first live entry and costs only what it drops. A shorter TTL after a longer one would wait behind it in memory,
   * never be answered (live() checks every read), and go with it.
   */
  readonly #entries = new Map<string, { value: string; expiresAt: number }>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly sweepMs = SWEEP_MS,
  ) {}

  async hold(tenantId: string, token: string, sealed: SealedCard, ttlSeconds: number): Promise<void> {
    this.sweep();
    const k = key(tenantId, token);
    // Moved to the end, not updated in place, so the map stays in expiry order.
    this.#entries.delete(k);
    this.#entries.set(k, { value: encode(sealed), expiresAt: this.now() + ttlSeconds * 1000 });
    if (!this.#sweeper) {
      this.#sweeper = setInterval(() => this.sweep(), this.sweepMs);
      this.#sweeper.unref();
    }
  }

  async take(tenantId: string, token: string): Promise<SealedCard | undefined> {
    this.sweep();
    const entry = this.live(key(tenantId, token));
    this.#entries.delete(key(tenantId, token));
    return entry && decode(entry.value);
  }

  async held(tenantId: string, token: string): Promise<boolean> {
    this.sweep();
    return this.live(key(tenantId, token)) !== undefined;
  }

  async discard(tenantId: string, token: string): Promise<void> {
    this.#entries.delete(key(tenantId, token));
  }

  async close(): Promise<void> {
    this.stopSweeping();
    this.#entries.clear();
  }

  /** How many CVCs are in memory, expired or not. */
  get size(): number {
    return this.#entries.size;
  }

  private live(k: string) {
    const entry = this.#entries.get(k);
    if (entry && entry.expiresAt <= this.now()) this.#entries.delete(k);
    return entry && entry.expiresAt > this.now() ? entry : undefined;
  }

  /** Drops expired entries from the front; with none left, the timer stops until the next hold. */
  private sweep(): void {
    const now = this.now();
    for (const [k, entry] of this.#entries) {
      if (entry.expiresAt > now) return;
      this.#entries.delete(k);
    }
    this.stopSweeping();
  }

  private stopSweeping(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}
