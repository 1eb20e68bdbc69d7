// Shutdown with a keep-alive connection that never goes idle (an ingress, a pooled backend): once the vault is
// stopping, its next answer on that connection says `Connection: close` and the vault ends the connection, instead
// of serving it keep-alive until the grace period cuts it off mid-request.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { startVault, type RunningVault } from '../../src/main';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { captureLog } from '../support/log-capture';

let fresh: FreshDatabase;
let dir: string;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_shutdown');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-shutdown-'));
});
afterAll(async () => {
  await fresh.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** One HTTP/1.1 connection, read response by response. */
class Connection {
  private buffer = '';
  private waiters: (() => void)[] = [];
  ended = false;
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on('end', () => {
      this.ended = true;
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  static open(port: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new Connection(socket)));
      socket.once('error', reject);
    });
  }

  /** The next whole response: its status line and headers (lowercased names); the body is skipped. */
  async response(): Promise<{ status: number; headers: Record<string, string> }> {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const [statusLine, ...lines] = this.buffer.slice(0, end).split('\r\n');
        const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        const length = Number(headers['content-length'] ?? 0);
        if (this.buffer.length >= end + 4 + length) {
          this.buffer = this.buffer.slice(end + 4 + length);
          return { status: Number(statusLine!.split(' ')[1]), headers };
        }
      }
      if (this.ended) throw new Error('the connection ended before a whole response');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async closedByServer(): Promise<void> {
    while (!this.ended) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('answers with Connection: close once stopping, also a request already in flight, and ends that busy connection at once', async () => {
  const config = loadConfig({ DATABASE_URL: fresh.url, PORT: '0', HOST: '127.0.0.1', RATE_LIMITS: 'off', DEMO_PORT: 'off', METRICS_PORT: 'off' }, dir);
  const vault: RunningVault = await startVault(config, createLogger({ level: 'info', destination: captureLog() }));
  const { port } = vault.server.address() as net.AddressInfo;
  const connection = await Connection.open(port);
  let stopped: Promise<void> | undefined;
  try {
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: vault\r\n\r\n');
    const before = await connection.response();
    expect(before.status).toBe(200);
    expect(before.headers.connection).not.toBe('close');

    // A request in progress (its body not yet sent) keeps the connection busy while the vault starts to stop.
    const body = JSON.stringify({ 'csp-report': { 'violated-directive': 'script-src', 'blocked-uri': 'inline' } });
    connection.socket.write(`POST /hosted/csp-reports HTTP/1.1\r\nHost: vault\r\nContent-Type: application/csp-report\r\nContent-Length: ${body.length}\r\n\r\n`);
    await sleep(200);
    const stopping = Date.now();
    stopped = vault.stop();
    await sleep(200);
    connection.socket.write(body);
    const answer = await connection.response();
    expect(answer.status).toBeLessThan(500);
    // Its answer, written after stopping began, is told to close too: said keep-alive, the connection would idle
    // until the 10 s grace cut it, racing the client's next request on it.
    expect(answer.headers.connection).toBe('close');
    await connection.closedByServer();
    await stopped;
    expect(Date.now() - stopping).toBeLessThan(5_000);
  } finally {
    connection.socket.destroy();
    await (stopped ?? vault.stop());
  }
}, 30_000);

it('keeps serving for SHUTDOWN_DELAY_SECONDS once stopping, answering /readyz 503, then closes its listener', async () => {
  const config = loadConfig(
    { DATABASE_URL: fresh.url, PORT: '0', HOST: '127.0.0.1', RATE_LIMITS: 'off', DEMO_PORT: 'off', METRICS_PORT: 'off', SHUTDOWN_DELAY_SECONDS: '2' },
    dir,
  );
  const vault: RunningVault = await startVault(config, createLogger({ level: 'info', destination: captureLog() }));
  const { port } = vault.server.address() as net.AddressInfo;
  const get = async (path: string) => {
    const connection = await Connection.open(port);
    try {
      connection.socket.write(`GET ${path} HTTP/1.1\r\nHost: vault\r\n\r\n`);
      return await connection.response();
    } finally {
      connection.socket.destroy();
    }
  };
  expect((await get('/readyz')).status).toBe(200);
  const stopping = Date.now();
  const stopped = vault.stop();
  try {
    await sleep(500);
    // A new connection, as a load balancer that has not yet heard of the stop opens one: served, not refused.
    const health = await get('/healthz');
    expect(health.status).toBe(200);
    expect(health.headers.connection).toBe('close');
    expect((await get('/readyz')).status).toBe(503);
  } finally {
    await stopped;
  }
  expect(Date.now() - stopping).toBeGreaterThanOrEqual(2000);
  await expect(Connection.open(port)).rejects.toThrow(/ECONNREFUSED/);
}, 30_000);
