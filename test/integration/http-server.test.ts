// The vault's HTTP server: requests born with the app's prototypes, answered exactly as on a plain Node server.
import http from 'node:http';
import type { Express } from 'express';
import request from 'supertest';
import { createHttpServer } from '../../src/http/server';
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
