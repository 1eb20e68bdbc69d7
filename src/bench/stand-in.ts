// The bench's floor: servers that answer a detokenize request at once, to show what this machine allows before the vault's own work.
import http from 'node:http';
import express from 'express';
import { createHttpServer } from '../http/server';

export type StandInKind = 'node' | 'express';

export const STAND_IN_KINDS: readonly StandInKind[] = ['node', 'express'];

/** The token the bench asks a stand-in to detokenize: the API reference's example, format-preserving like the vault's. */
export const STAND_IN_TOKEN = '4111119264401111';

/**
 * A detokenize reply of the vault's shape and size. The number is Visa's published test PAN: the stand-in holds
 * no cards and the bench never sends it one.
 */
const REPLY = JSON.stringify({ token: STAND_IN_TOKEN, card: { number: '4111111111111111', exp_month: 12, exp_year: 2031 } });

/** node:http alone: the body read and parsed, the fixed reply sent. Nothing any HTTP service could do without. */
function nodeHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(REPLY);
  });
}

/** Express as the vault runs it (createHttpServer, no ETag, JSON bodies), with a route that has nothing to do. */
function expressApp(): express.Express {
  const app = express();
  app.set('etag', false);
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb', strict: true, type: 'application/json' }));
  app.get('/readyz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.post('/v1/tokens/:token/detokenize', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.type('application/json').send(REPLY);
  });
  // A body that does not parse: its status, without Express's default HTML page.
  app.use((err: { status?: unknown }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(typeof err.status === 'number' ? err.status : 500).end();
  });
  return app;
}

export function startStandIn(kind: StandInKind, host: string, port: number): Promise<http.Server> {
  const server = kind === 'node' ? http.createServer(nodeHandler) : createHttpServer(expressApp());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** What the bench checks of a stand-in's reply: it is the detokenize answer, not an error page. */
export function isStandInReply(status: number, body: string): boolean {
  return status === 200 && body === REPLY;
}
