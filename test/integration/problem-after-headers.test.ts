// An error raised once an answer has begun cannot become a problem+json: it is logged by type and code through the
// vault's logger and the connection is cut, never handed to Express's default handler (which prints it to stderr).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { problemHandler } from '../../src/http/problem';
import { closeNow } from '../../src/http/server';
import { createLogger } from '../../src/log';
import { captureLog } from '../support/log-capture';
import { newPan } from '../support/pans';

afterEach(() => jest.restoreAllMocks());

it('logs an error raised after the headers were sent by type and code only, cuts the answer short, and prints nothing to stderr', async () => {
  const pan = newPan();
  // As a pg DatabaseError carries them: a message and a detail that can quote the row.
  const failure = Object.assign(new Error(`check constraint violated by a quoted-row-value ${pan}`), { code: '23514', detail: `Failing row contains (${pan}).` });
  const captured = captureLog();
  const app = express();
  // Express's default handler prints errors in every environment but `test`; the vault runs in production.
  app.set('env', 'production');
  app.use((_req, res, next) => {
    res.locals.requestId = 'req-after-headers';
    next();
  });
  app.get('/export', async (_req, res) => {
    res.status(200).type('application/x-ndjson');
    // The first line reaches the client before the export fails.
    await new Promise((resolve) => res.write('{"line":1}\n', resolve));
    throw failure;
  });
  app.use(problemHandler(createLogger({ level: 'info', destination: captured })));
  const consoleError = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  const stderr: string[] = [];
  const realWrite = process.stderr.write.bind(process.stderr);
  jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stderr.push(String(chunk));
    return realWrite(chunk, ...(rest as []));
  });

  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const answer = await new Promise<{ status: number | undefined; complete: boolean }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/export' }, (res) => {
        res.on('error', () => undefined);
        res.resume();
        res.on('close', () => resolve({ status: res.statusCode, complete: res.complete }));
      });
      req.on('error', reject);
    });
    expect(answer).toEqual({ status: 200, complete: false });
  } finally {
    await closeNow(server);
  }

  expect(consoleError).not.toHaveBeenCalled();
  expect(stderr.join('')).not.toContain('quoted-row-value');
  const [line] = captured.entries().filter((entry) => entry.request_id === 'req-after-headers');
  expect(line).toMatchObject({ level: 'error', err: { type: 'Error', code: '23514' } });
  expect(Object.keys(line!.err as object).sort()).toEqual(['code', 'stack', 'type']);
  expect(JSON.stringify(line)).not.toContain('quoted-row-value');
  expect(JSON.stringify(line)).not.toContain('Failing row');
});
