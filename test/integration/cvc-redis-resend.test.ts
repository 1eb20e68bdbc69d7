// A CVC hold that failed must never take effect later. ioredis by default keeps a command that got no answer and
// sends it again after reconnecting: a CVC the API reported as not held would then appear once Redis is back,
// with a fresh TTL, and (if the first write had landed) be revealable a second time.
import net from 'node:net';
import Redis from 'ioredis';
import { RedisCvcStore } from '../../src/store/cvc-store';
import { TEST_REDIS_URL } from '../support/env';

/** A TCP proxy to Redis that can swallow what the client sends, and cut every connection. */
class FlakyProxy {
  private server = net.createServer((client) => this.accept(client));
  private sockets = new Set<net.Socket>();
  swallow = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => this.sockets.delete(s));
    }
    client.on('data', (chunk) => {
      if (!this.swallow) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('does not send a timed-out CVC write again when the connection comes back', async () => {
  const url = new URL(TEST_REDIS_URL);
  const proxy = await new FlakyProxy({ host: url.hostname, port: Number(url.port || 6379) }).start();
  const store = new RedisCvcStore(`redis://127.0.0.1:${proxy.port}`);
  const direct = new Redis(TEST_REDIS_URL);
  const tenant = '33333333-3333-4333-8333-333333333333';
  const token = `4111119${Date.now().toString().slice(-9)}`;
  const sealed = { dataKeyId: 'dk', iv: Buffer.alloc(12, 1), tag: Buffer.alloc(16, 2), ciphertext: Buffer.alloc(8, 3) };
  try {
    // No offline queue: a command fails at once until the connection (through the proxy) is up.
    const untilConnected = async () => {
      for (let i = 0; i < 50; i++) {
        if (await store.held(tenant, 'probe').then(() => true, () => false)) return;
        await sleep(100);
      }
      throw new Error('never connected through the proxy');
    };
    await untilConnected();
    expect(await store.held(tenant, token)).toBe(false);
    proxy.swallow = true;
    await expect(store.hold(tenant, token, sealed, 600)).rejects.toThrow();
    // Redis is reachable again on a new connection, as after a blip or a failover.
    proxy.swallow = false;
    proxy.cut();
    await untilConnected();
    await sleep(300);
    expect(await direct.exists(`cardvault:cvc:${tenant}:${token}`)).toBe(0);
  } finally {
    await direct.del(`cardvault:cvc:${tenant}:${token}`);
    direct.disconnect();
    await store.close();
    await proxy.stop();
  }
});
