// The vault's HTTP server: requests born with the app's prototypes, answered exactly as on a plain Node server.
import http from 'node:http';
import net from 'node:net';
import type { Express } from 'express';
import request from 'supertest';
import { closeNow, createHttpServer } from '../../src/http/server';
import { buildHarness, type Harness } from '../support/harness';
import { newPan } from '../support/pans';

let h: Harness;
let keys: Record<string, string>;
beforeAll(async () => {
  h = await buildHarness();
  ({ keys } = await h.tenant(['merchant', 'payments']));
});
afterAll(() => h.close());

interface Arrival {
  /** Before Express saw them: did the request and response already have the app's prototypes? */
  request: boolean;
  response: boolean;
  /** When the response finished: do they have them now? */
  finished?: boolean;
}

function watchArrivals(server: http.Server, app: Express): Arrival[] {
  const seen: Arrival[] = [];
  server.prependListener('request', (req, res) => {
    const arrival: Arrival = { request: Object.getPrototypeOf(req) === app.request, response: Object.getPrototypeOf(res) === app.response };
    res.once('finish', () => {
      arrival.finished = Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response;
    });
    seen.push(arrival);
  });
  return seen;
}

it('serves tokenize, detokenize and refusals with the same statuses, headers and bodies as a plain server', async () => {
  const app = h.appWith({});
  const born = createHttpServer(app);
  const card = { number: newPan(), exp_month: 12, exp_year: 2031 };
  const created = await request(born).post('/v1/tokens').set('Authorization', `Bearer ${keys.merchant}`).send({ card });
  expect(created.status).toBe(201);

  const detokenize = (server: http.Server | Express) =>
    request(server).post(`/v1/tokens/${created.body.token}/detokenize`).set('Authorization', `Bearer ${keys.payments}`).send({ purpose: 'authorization' });
  const [viaBorn, viaPlain] = [await detokenize(born), await detokenize(app)];
  expect(viaBorn.status).toBe(200);
  expect(viaBorn.body).toEqual(viaPlain.body);
  expect(viaBorn.body.card.number).toBe(card.number);
  // Every header but the per-request ids and the date is the same on both servers.
  const stable = (headers: Record<string, string>) => {
    const { date: _date, 'x-request-id': _id, traceparent: _trace, ...rest } = headers;
    return rest;
  };
  expect(stable(viaBorn.headers as Record<string, string>)).toEqual(stable(viaPlain.headers as Record<string, string>));
  expect(viaBorn.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(viaBorn.headers['cache-control']).toBe('no-store');
  expect(viaBorn.headers['x-frame-options']).toBe('DENY');

  const refused = await request(born).post(`/v1/tokens/${created.body.token}/detokenize`).set('Authorization', 'Bearer nope').send({ purpose: 'authorization' });
  expect(refused.status).toBe(401);
  expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(refused.body.code).toBe('unauthenticated');
});

it('creates each request and response with the app prototypes, which Express then leaves in place', async () => {
  const app = h.appWith({});
  const server = createHttpServer(app);
  const arrivals = watchArrivals(server, app);
  expect((await request(server).get('/healthz')).status).toBe(200);
  expect(arrivals).toEqual([{ request: true, response: true, finished: true }]);

  // On a plain Node server the same app's requests arrive as bare IncomingMessages, and Express swaps their
  // prototypes: the slow path this server exists to avoid.
  const plain = http.createServer(app);
  const plainArrivals = watchArrivals(plain, app);
  expect((await request(plain).get('/healthz')).status).toBe(200);
  expect(plainArrivals).toEqual([{ request: false, response: false, finished: true }]);
});

it('reuses one pair of classes for a second server on the same app, so the prototype chain never grows', async () => {
  const app = h.appWith({});
  const first = createHttpServer(app);
  const [requestPrototype, responsePrototype] = [app.request, app.response];
  const second = createHttpServer(app);
  expect([app.request, app.response]).toEqual([requestPrototype, responsePrototype]);
  const arrivals = watchArrivals(second, app);
  expect((await request(second).get('/healthz')).status).toBe(200);
  expect((await request(first).get('/readyz')).status).toBe(200);
  expect(arrivals).toEqual([{ request: true, response: true, finished: true }]);
  // Express's own methods are still one link up the chain.
  expect(typeof app.request.get).toBe('function');
  expect(typeof app.response.json).toBe('function');
});

describe("Node's own refusals", () => {
  let server: http.Server;
  let port: number;
  const serverSockets: net.Socket[] = [];
  beforeAll(async () => {
    server = createHttpServer(h.app);
    server.on('connection', (socket: net.Socket) => serverSockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => closeNow(server));

  /** Sends raw bytes, returns everything the server answered before it closed the connection. */
  const exchange = (bytes: string, socket = net.connect(port, '127.0.0.1')) =>
    new Promise<string>((resolve, reject) => {
      let answer = '';
      socket.on('connect', () => socket.write(bytes));
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
    });

  const problemOf = (answer: string) => {
    const [head, body] = answer.split('\r\n\r\n');
    return { statusLine: head!.split('\r\n')[0], type: /content-type: ([^\r]+)/i.exec(head!)?.[1], body: JSON.parse(body!) as Record<string, unknown> };
  };

  it.each([
    ['headers over the limit', `GET /healthz HTTP/1.1\r\nHost: v\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`, 431, 'headers_too_large'],
    ['bytes that are not HTTP', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400, 'invalid_request'],
    ['a broken chunk size', 'POST /v1/tokens HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400, 'invalid_request'],
  ])('answers %s with problem+json and a stable code, then closes', async (_name, bytes, status, code) => {
    const { statusLine, type, body } = problemOf(await exchange(bytes));
    expect(statusLine).toBe(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}`);
    expect(type).toBe('application/problem+json');
    expect(body).toEqual({ type: `urn:cardvault:problem:${code}`, title: expect.any(String), status, code });
  });

  it('answers a request not received within requestTimeout with 408 request_timeout', async () => {
    // Node raises this from a timer that checks every 30 s by default: raised here the way Node raises it.
    const socket = net.connect(port, '127.0.0.1');
    // Headers in, body still owed: the request is being read when the timer fires.
    const head = `POST /v1/tokens HTTP/1.1\r\nHost: v\r\nAuthorization: Bearer ${keys.merchant}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
    const answered = exchange(`${head}{"card"`, socket);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const serverSide = serverSockets.find((s) => s.remotePort === socket.localPort)!;
    server.emit('clientError', Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), serverSide);
    const { statusLine, body } = problemOf(await answered);
    expect(statusLine).toBe('HTTP/1.1 408 Request Timeout');
    expect(body).toMatchObject({ status: 408, code: 'request_timeout' });
  });
});
