// GET /metrics on a port of its own, apart from the API: scraping needs no API key, so it must not share the API's port.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { closeNow } from '../http/server';
import type { Logger } from '../log';

export interface MetricsServer {
  server: Server;
  port: number;
  stop(): Promise<void>;
}

/** Listens on host:port (0: any free port); rejects if the port cannot be bound. */
export async function serveMetrics(options: { registry: Registry; host: string; port: number; log: Logger }): Promise<MetricsServer> {
  const { registry, log } = options;
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        log.error({ err }, 'metrics could not be collected');
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    server,
    port,
    stop: () => closeNow(server),
  };
}
