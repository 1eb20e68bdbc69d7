// The optional Redis connection (shared rate-limit state comes later); its absence degrades, never stops, the vault.
import { once } from 'node:events';
import Redis from 'ioredis';

const READY_WAIT_MS = 1000;

export interface RedisHandle {
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export function openRedis(url: string): RedisHandle {
  const client = new Redis(url, { lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 });
  // Connection errors are reported through readiness; without a listener ioredis would log to stderr.
  client.on('error', () => undefined);
  return {
    async ping() {
      try {
        // Commands fail at once while (re)connecting (no offline queue): give a connection in progress a moment.
        if (client.status !== 'ready') await once(client, 'ready', { signal: AbortSignal.timeout(READY_WAIT_MS) });
        return (await client.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      client.disconnect();
    },
  };
}
