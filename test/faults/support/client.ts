// HTTP to a vault process: plain node:http (a connection error is an outcome to count, not a test failure),
// and raw sockets for requests no well-behaved client library would send.
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed JSON body, when there is one. */
  body: any;
}

export interface CallOptions {
  key?: string;
  /** An object is sent as JSON; a string or a Buffer as it is. */
  body?: unknown;
  headers?: Record<string, string>;
  agent?: Agent;
  timeoutMs?: number;
}

/** One request; rejects only when no HTTP answer came back (refused, reset, timed out). */
export function call(base: string, method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const payload =
    options.body === undefined ? undefined : typeof options.body === 'string' || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers, agent: options.agent, timeout: options.timeoutMs ?? 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text && /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
    });
    req.once('timeout', () => req.destroy(new Error('timed out')));
    req.once('error', reject);
    req.end(payload);
  });
}

export const tokenize = (base: string, key: string, pan: string, extra: Record<string, unknown> = {}, agent?: Agent, idempotencyKey?: string) =>
  call(base, 'POST', '/v1/tokens', {
    key,
    agent,
    body: { card: { number: pan, exp_month: 12, exp_year: 2031, ...extra } },
    headers: idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey },
  });

export const detokenize = (base: string, key: string, token: string, agent?: Agent) =>
  call(base, 'POST', `/v1/tokens/${encodeURIComponent(token)}/detokenize`, { key, agent, body: { purpose: 'authorization' } });

export interface RawAnswer {
  /** The status of the first response, if one came back before the connection closed or the wait ended. */
  status: number | undefined;
  /** Everything the server sent, as latin1 so a byte is a character. */
  raw: string;
  /** The server closed the connection (as opposed to our wait ending). */
  closed: boolean;
}

/** Writes `bytes` on a fresh connection and collects what comes back until the server closes it or `waitMs` passes. */
export function rawExchange(port: number, bytes: Buffer | string, waitMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
      resolve({ status: match ? Number(match[1]) : undefined, raw, closed });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A server that answers early and resets may make our write fail: what it sent is still the answer.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      closed = true;
      finish();
    });
    socket.once('connect', () => socket.write(bytes));
  });
}
