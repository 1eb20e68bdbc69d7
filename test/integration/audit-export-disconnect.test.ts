// GET /v1/audit/events streams with back-pressure. An auditor who hangs up mid-export must end it: the handler
// stops reading the log, instead of waiting forever for a 'drain' that a closed socket never sends.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { AuditService } from '../../src/audit/audit-service';
import { auditRoutes } from '../../src/http/audit-routes';
import { allowOnly } from '../../src/http/authorize';
import { closeNow } from '../../src/http/server';

const LINE = `${JSON.stringify({ type: 'leaf', seq: 0, leaf_hash: 'a'.repeat(43), pad: 'x'.repeat(900) })}\n`;
const LINES = 200_000; // about 190 MB: far more than any socket buffer holds

it('stops reading the log when the client disconnects while the response is back-pressured', async () => {
  let pulled = 0;
  let closed!: () => void;
  const readerClosed = new Promise<void>((resolve) => (closed = resolve));
  async function* log(): AsyncGenerator<string> {
    try {
      for (; pulled < LINES; pulled++) yield LINE;
    } finally {
      closed();
    }
  }
  const audit = { export: async () => log() } as unknown as AuditService;
  const app = express();
  app.use((_req, res, next) => {
    res.locals.principal = { tenant: { id: 't', name: 't' }, apiKeyId: 'k', role: { name: 'auditor', actions: new Set(['audit.read']) } };
    next();
  });
  app.use('/v1/audit', auditRoutes(audit, allowOnly({ record: async () => undefined })));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/v1/audit/events' }, (res) => {
        expect(res.statusCode).toBe(200);
        // Read one chunk, then stop reading so the server's writes back up, then hang up.
        res.once('data', () => {
          res.pause();
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 200);
        });
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    });
    await Promise.race([
      readerClosed,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the export is still waiting after the client left (${pulled} lines read)`)), 5000).unref()),
    ]);
    expect(pulled).toBeLessThan(LINES);
  } finally {
    await closeNow(server);
  }
});
