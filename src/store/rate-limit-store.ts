// Rate-limit counters in Redis, shared by every instance; while Redis is unreachable, in this process's memory instead.
import { once } from 'node:events';
import { MemoryStore, type ClientRateLimitInfo, type Options, type Store } from 'express-rate-limit';
import Redis from 'ioredis';
import { RedisStore } from 'rate-limit-redis';

export const RATE_LIMIT_KEY_PREFIX = 'cardvault:rl:';

/** A request waits at most this long on Redis before its count moves to memory. */
const COMMAND_TIMEOUT_MS = 200;
/** While degraded, how often Redis is asked whether it is back; requests meanwhile never wait on it. */
const PROBE_INTERVAL_MS = 1000;

/** express-rate-limit's Store, with the `get` the failed-authentication gate reads before anything is counted. */
export interface CounterStore extends Store {
  get(key: string): Promise<ClientRateLimitInfo | undefined>;
}

export interface RateLimitStoreOptions {
  /** Unset: counters live in this process only, which is exact for a single instance and no more. */
  redisUrl?: string;
  /** Start of every Redis key; tests give each run its own. Keys end in an API key id or an address, never a secret. */
  prefix?: string;
  commandTimeoutMs?: number;
  probeIntervalMs?: number;
}

export class RateLimitStore {
  private readonly client: Redis | undefined;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly probeIntervalMs: number;
  private readonly stores: FallbackStore[] = [];
  private down = false;
  private probe: NodeJS.Timeout | undefined;

  constructor(options: RateLimitStoreOptions = {}) {
    this.prefix = options.prefix ?? RATE_LIMIT_KEY_PREFIX;
    this.timeoutMs = options.commandTimeoutMs ?? COMMAND_TIMEOUT_MS;
    this.probeIntervalMs = options.probeIntervalMs ?? PROBE_INTERVAL_MS;
    if (options.redisUrl) {
      // No offline queue and no retries: a command to an absent Redis fails at once, and the count goes to memory.
      this.client = new Redis(options.redisUrl, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: this.timeoutMs,
        connectTimeout: 2000,
        // close() while Redis is down would otherwise hold the process open for ioredis's default 2 s.
        disconnectTimeout: this.timeoutMs,
      });
      // Outages are reported through degraded(); without a listener ioredis would log every reconnect to stderr.
      this.client.on('error', () => undefined);
    }
  }

  /** True while Redis is configured but unreachable: limits then hold per process, not across instances. */
  degraded(): boolean {
    return this.down;
  }

  /** A store for one limiter (express-rate-limit refuses to share one); `name` keeps its keys apart. */
  store(name: string): CounterStore {
    const prefix = `${this.prefix}${name}:`;
    const redis = this.client && redisStore(this.client, prefix);
    const store = new FallbackStore(prefix, redis, this);
    this.stores.push(store);
    return store;
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    for (const store of this.stores) store.shutdown();
    this.client?.disconnect();
  }

  /** Runs one Redis operation; `undefined` means Redis failed (or is known down) and the caller must use memory. */
  async attempt<T>(operation: () => Promise<T>): Promise<{ value: T } | undefined> {
    const client = this.client;
    if (!client || this.down) return undefined;
    try {
      // A connection still being made (at start-up) gets a moment; a refused one fails fast.
      if (client.status !== 'ready') await once(client, 'ready', { signal: AbortSignal.timeout(this.timeoutMs) });
      return { value: await operation() };
    } catch {
      this.markDown();
      return undefined;
    }
  }

  private markDown(): void {
    if (this.down) return;
    this.down = true;
    this.probe = setInterval(() => void this.probeOnce(), this.probeIntervalMs);
    this.probe.unref();
  }

  private async probeOnce(): Promise<void> {
    try {
      if (this.client?.status !== 'ready' || (await this.client.ping()) !== 'PONG') return;
    } catch {
      return;
    }
    clearInterval(this.probe);
    this.probe = undefined;
    this.down = false;
  }
}

function redisStore(client: Redis, prefix: string): RedisStore {
  return new RedisStore({
    prefix,
    sendCommand: (command: string, ...args: string[]) => client.call(command, ...args) as Promise<string | number | Array<string | number>>,
  });
}

/** Counts in Redis while its RateLimitStore says Redis answers, in memory otherwise. */
class FallbackStore implements CounterStore {
  readonly localKeys = false;
  private readonly memory = new MemoryStore();
  private options: Options | undefined;
  /** rate-limit-redis loads its scripts once, in init; a load that failed (Redis down at start) must be redone. */
  private scripts: Promise<void> | undefined;

  constructor(
    readonly prefix: string,
    private readonly redis: RedisStore | undefined,
    private readonly link: RateLimitStore,
  ) {}

  init(options: Options): void {
    this.options = options;
    this.memory.init(options);
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    const counted = await this.viaRedis((redis) => redis.increment(key));
    return counted ? counted.value : this.memory.increment(key);
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const read = await this.viaRedis((redis) => redis.get(key));
    if (!read) return this.memory.get(key);
    // rate-limit-redis answers a missing key with NaN hits and an expiry in the past.
    const info = read.value;
    return info && Number.isFinite(info.totalHits) && info.totalHits > 0 && (info.resetTime?.getTime() ?? 0) > Date.now() ? info : undefined;
  }

  async decrement(key: string): Promise<void> {
    if (!(await this.viaRedis((redis) => redis.decrement(key)))) await this.memory.decrement(key);
  }

  async resetKey(key: string): Promise<void> {
    if (!(await this.viaRedis((redis) => redis.resetKey(key)))) await this.memory.resetKey(key);
  }

  shutdown(): void {
    this.memory.shutdown();
  }

  private viaRedis<T>(operation: (redis: RedisStore) => Promise<T>): Promise<{ value: T } | undefined> {
    const redis = this.redis;
    const options = this.options;
    if (!redis || !options) return Promise.resolve(undefined);
    return this.link.attempt(async () => {
      try {
        this.scripts ??= redis.init(options);
        await this.scripts;
        return await operation(redis);
      } catch (err) {
        this.scripts = undefined;
        throw err;
      }
    });
  }
}
