// W3C trace context: a caller's valid traceparent is continued, anything else starts a fresh trace; outbound webhooks carry one.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { Secret } from '../../src/domain/secret';
import { continueTrace } from '../../src/http/trace-context';
import type { ClaimedDelivery, WebhookStore } from '../../src/updater/webhooks/ports';
import { WebhookDeliverer } from '../../src/updater/webhooks/deliverer';
import { buildHarness, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

let h: Harness;

beforeAll(async () => {
  h = await buildHarness();
});
afterAll(() => h.close());

/** The request's log line, found by the X-Request-Id the vault answered with. */
function logLineOf(res: request.Response): Record<string, unknown> {
  const id = res.headers['x-request-id'];
  const line = h.captured.entries().find((entry) => entry.msg === 'request' && entry.request_id === id);
  expect(line).toBeDefined();
  return line!;
}

function parsed(res: request.Response): { traceId: string; spanId: string; flags: string } {
  const match = TRACEPARENT.exec(String(res.headers.traceparent));
  expect(match).not.toBeNull();
  return { traceId: match![1]!, spanId: match![2]!, flags: match![3]! };
}

describe('incoming traceparent', () => {
  it('starts a fresh sampled trace when there is none, and logs its trace and span ids', async () => {
    const res = await request(h.app).get('/healthz');
    const { traceId, spanId, flags } = parsed(res);
    expect(flags).toBe('01');
    expect(traceId).not.toMatch(/^0+$/);
    expect(logLineOf(res)).toMatchObject({ trace_id: traceId, span_id: spanId });
  });

  it.each([
    ['sampled', '01', '01'],
    ['not sampled', '00', '00'],
    ['sampled with unknown flag bits, which are not passed on', 'ff', '01'],
  ])('continues a valid trace (%s) with a new span of its own', async (_case, flagsIn, flagsOut) => {
    const res = await request(h.app).get('/healthz').set('traceparent', `00-${TRACE_ID}-${PARENT_ID}-${flagsIn}`);
    const { traceId, spanId, flags } = parsed(res);
    expect(traceId).toBe(TRACE_ID);
    expect(spanId).not.toBe(PARENT_ID);
    expect(flags).toBe(flagsOut);
    expect(logLineOf(res)).toMatchObject({ trace_id: TRACE_ID, span_id: spanId });
  });

  it('gives every request its own span in the same trace', async () => {
    const header = `00-${TRACE_ID}-${PARENT_ID}-01`;
    const [a, b] = await Promise.all([request(h.app).get('/healthz').set('traceparent', header), request(h.app).get('/healthz').set('traceparent', header)]);
    expect(parsed(a!).traceId).toBe(parsed(b!).traceId);
    expect(parsed(a!).spanId).not.toBe(parsed(b!).spanId);
  });

  it.each([
    ['a later version', `01-${TRACE_ID}-${PARENT_ID}-01`],
    ['the forbidden version ff', `ff-${TRACE_ID}-${PARENT_ID}-01`],
    ['version 00 with a trailing field', `00-${TRACE_ID}-${PARENT_ID}-01-extra`],
    ['upper-case hex', `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT_ID}-01`],
    ['an all-zero parent id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
    ['a short trace id', `00-${TRACE_ID.slice(1)}-${PARENT_ID}-01`],
    ['a non-hex flag', `00-${TRACE_ID}-${PARENT_ID}-0x`],
    ['spaces inside', `00-${TRACE_ID} -${PARENT_ID}-01`],
    ['two headers joined', `00-${TRACE_ID}-${PARENT_ID}-01, 00-${TRACE_ID}-${PARENT_ID}-01`],
    ['script', `<script>alert(1)</script>`],
  ])('ignores a traceparent with %s: a fresh trace, and the raw header is never echoed', async (_case, header) => {
    const res = await request(h.app).get('/healthz').set('traceparent', header).set('tracestate', 'vendor=kept-if-valid');
    const { traceId } = parsed(res);
    expect(traceId).not.toBe(TRACE_ID);
    expect(traceId).not.toBe(TRACE_ID.toUpperCase());
    const answered = JSON.stringify(res.headers);
    expect(answered).not.toContain(header);
    expect(answered).not.toContain('kept-if-valid');
    expect(logLineOf(res).trace_id).toBe(traceId);
  });

  it('never lets a card number in traceparent or tracestate reach the logs or the response', async () => {
    const pan = newPan();
    const dashed = pan.replace(/(\d{4})(?=\d)/g, '$1-');
    const headers: Array<[string, string]> = [
      // Valid hex throughout: only the digit-run rule stands between these ids and the log line.
      [`00-${pan}abcdefabcdefabcd-${PARENT_ID}-01`, `vendor=${pan}`],
      [`00-0000${pan}000000000000-${PARENT_ID}-01`, `vendor=${dashed}`],
      [`00-${TRACE_ID}-${pan}-01`, `a=1,vendor=x${pan}x`],
      [`00-${pan}${pan}-${PARENT_ID}-01`, `vendor=${pan.slice(0, 8)} ${pan.slice(8)}`],
    ];
    const before = h.captured.lines.length;
    for (const [traceparent, tracestate] of headers) {
      for (const path of ['/healthz', '/v1/tokens']) {
        const res = await request(h.app).post(path).set('traceparent', traceparent).set('tracestate', tracestate).send(cardBody(newPan()));
        expect(JSON.stringify(res.headers)).not.toContain(pan);
        expect(JSON.stringify(res.headers)).not.toContain(pan.slice(0, 12));
        expect(parsed(res).traceId).not.toContain(pan.slice(0, 12));
      }
    }
    const logged = h.captured.lines.slice(before).join('');
    expect(logged).not.toContain(pan);
    expect(logged).not.toContain(dashed);
    expect(logged).not.toContain(pan.slice(0, 12));
    expect(logged).toContain('"trace_id"');
  });

  it('continues the trace of an authenticated call and never echoes tracestate', async () => {
    const { keys } = await h.tenant(['merchant']);
    const res = await request(h.app)
      .post('/v1/tokens')
      .set(bearer(keys.merchant!))
      .set('traceparent', `00-${TRACE_ID}-${PARENT_ID}-01`)
      .set('tracestate', 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')
      .send(cardBody(newPan()));
    expect(res.status).toBe(201);
    expect(parsed(res).traceId).toBe(TRACE_ID);
    expect(res.headers.tracestate).toBeUndefined();
    expect(logLineOf(res)).toMatchObject({ trace_id: TRACE_ID, route: '/v1/tokens/', status: 201 });
    expect(JSON.stringify(logLineOf(res))).not.toContain('congo');
  });
});

describe('tracestate', () => {
  const parent = `00-${TRACE_ID}-${PARENT_ID}-01`;

  it.each([
    ['one member', 'congo=t61rcWkgMzE', 'congo=t61rcWkgMzE'],
    ['members with spaces and an empty one', 'rojo=00f067aa0ba902b7 ,, congo=t61rcWkgMzE', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'],
    ['a multi-tenant key', 'tenant1@vendor=value', 'tenant1@vendor=value'],
  ])('keeps %s', (_case, header, kept) => {
    expect(continueTrace(parent, header).traceState).toBe(kept);
  });

  it.each([
    ['an upper-case key', 'Congo=x'],
    ['a member without =', 'congo'],
    ['a value with =', 'congo=a=b'],
    ['a value outside printable ASCII', 'congo=caf\u00e9'],
    ['a duplicate key', 'congo=a,congo=b'],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')],
    ['more than 512 characters', `congo=${'a'.repeat(250)},rojo=${'b'.repeat(250)},x=${'c'.repeat(20)}`],
    ['12 digits in a row', 'congo=123456789012'],
  ])('drops one with %s, and still continues the trace', (_case, header) => {
    const context = continueTrace(parent, header);
    expect(context.traceId).toBe(TRACE_ID);
    expect(context.traceState).toBeUndefined();
  });

  it('is ignored with an invalid traceparent', () => {
    const context = continueTrace('garbage', 'congo=t61rcWkgMzE');
    expect(context.traceState).toBeUndefined();
    expect(context.parentId).toBeUndefined();
  });
});

describe('webhook deliveries', () => {
  let server: Server;
  const received: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      received.push(req.headers);
      req.resume();
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('send a fresh valid traceparent with every attempt, logged beside the delivery', async () => {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const row = (id: string): ClaimedDelivery => ({
      id,
      eventId: `evt_${id}`,
      eventType: 'card.updated',
      tenantId: 'tenant',
      endpointId: 'endpoint',
      url,
      sealedSecret: { dataKeyId: 'k', iv: Buffer.alloc(12), tag: Buffer.alloc(16), ciphertext: Buffer.alloc(1) },
      payload: { type: 'card.updated' },
      attempts: 0,
      endpointDisabled: false,
    });
    let rounds = 0;
    const store = {
      claimDue: async () => (rounds++ === 0 ? [row('1'), row('2')] : []),
      markDelivered: async () => undefined,
    } as unknown as WebhookStore;
    const results: string[] = [];
    const deliverer = new WebhookDeliverer({
      store,
      crypto: { openWebhookSecret: async () => new Secret('whsec_test') },
      log: h.log,
      // The receiver listens on 127.0.0.1.
      allowInternalAddresses: true,
      onDelivery: (result) => results.push(result),
    });
    const before = h.captured.lines.length;
    expect(await deliverer.deliverDue()).toEqual({ delivered: 2, retried: 0, dead: 0 });
    expect(results).toEqual(['delivered', 'delivered']);

    const sent = received.map((headers) => TRACEPARENT.exec(String(headers.traceparent)));
    expect(sent).toHaveLength(2);
    expect(sent.every((match) => match !== null)).toBe(true);
    expect(sent[0]![1]).not.toBe(sent[1]![1]);
    const logged = h.captured
      .entries()
      .slice(before)
      .filter((entry) => entry.msg === 'webhook delivered');
    expect(logged.map((entry) => entry.trace_id).sort()).toEqual(sent.map((match) => match![1]).sort());
    expect(logged.map((entry) => entry.span_id).sort()).toEqual(sent.map((match) => match![2]).sort());
  });
});
