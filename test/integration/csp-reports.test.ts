// POST /hosted/csp-reports: counted by directive, logged by origin only, refused when malformed, limited per address.
// test/browser/hosted-form.test.ts has Chromium send real reports for a framing and an injected script.
import request from 'supertest';
import type { Express } from 'express';
import { assembleHosted } from '../../src/hosted/dependencies';
import { CSP_REPORTS_PER_MINUTE, rateLimiters } from '../../src/http/rate-limit';
import { createMetrics, type VaultMetrics } from '../../src/metrics/metrics';
import { RateLimitStore } from '../../src/store/rate-limit-store';
import { buildHarness, type Harness } from '../support/harness';
import { newPan } from '../support/pans';

let h: Harness;
let app: Express;
let metrics: VaultMetrics;
let limits: RateLimitStore;

beforeAll(async () => {
  h = await buildHarness();
  metrics = createMetrics();
  limits = new RateLimitStore();
  app = h.appWith({
    // Each test speaks from its own address, so the per-address limit is under test only where meant.
    trustProxy: 1,
    hostedPage: assembleHosted({ db: h.db, signer: h.parts.signer }),
    metrics,
    rateLimits: rateLimiters({ stores: limits, log: h.log, onReject: metrics.rateLimitRejection }),
  });
});

afterAll(async () => {
  await limits.close();
  await h.close();
});

let address = 0;
const from = () => `198.51.100.${(address += 1)}`;

const report = (fields: Record<string, unknown>, ip = from()) =>
  request(app).post('/hosted/csp-reports').set('X-Forwarded-For', ip).set('Content-Type', 'application/csp-report').send(JSON.stringify({ 'csp-report': fields }));

async function violations(labels: { directive: string; disposition: string }): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'csp_violations_total');
  const value = (metric?.values ?? []).find((v) => v.labels.directive === labels.directive && v.labels.disposition === labels.disposition);
  return Number(value?.value ?? 0);
}

it('names itself as report-uri in the form page policy', async () => {
  // The error page (no session) keeps the global policy; the form's is checked by the browser tests on a live session.
  const { formPolicy } = await import('../../src/hosted/form-page');
  expect(formPolicy(['https://shop.example']).split('; ')).toContain('report-uri /hosted/csp-reports');
});

it('counts a violation by directive and logs only its directive, blocked origin and disposition', async () => {
  const pan = newPan();
  const session = 'eyJhbGciOiJFUzI1NiJ9.c2Vzc2lvbg.c2lnbmF0dXJl';
  const before = await violations({ directive: 'script-src-elem', disposition: 'enforce' });
  const res = await report({
    'document-uri': `https://vault.example/hosted/card-form?session=${session}&origin=https%3A%2F%2Fshop.example`,
    referrer: `https://shop.example/checkout?card=${pan}`,
    'effective-directive': 'script-src-elem',
    'violated-directive': 'script-src-elem',
    'original-policy': "default-src 'none'",
    'blocked-uri': `https://skimmer.example:8443/collect.js?pan=${pan}`,
    'script-sample': `send("${pan}")`,
    disposition: 'enforce',
    'status-code': 200,
  });
  expect(res.status).toBe(204);
  expect(await violations({ directive: 'script-src-elem', disposition: 'enforce' })).toBe(before + 1);
  const logged = h.captured.entries().filter((e) => e.csp !== undefined).pop();
  expect(logged).toMatchObject({ level: 'warn', csp: { directive: 'script-src-elem', blocked: 'https://skimmer.example:8443', disposition: 'enforce' } });
  const all = h.captured.lines.join('');
  expect(all).not.toContain(pan);
  expect(all).not.toContain(session);
  expect(await metrics.registry.metrics()).not.toContain(pan);
});

it.each<[string, Record<string, unknown>, { directive: string; blocked: string; disposition: string }]>([
  ['an inline script, by violated-directive alone (older browsers)', { 'violated-directive': 'script-src', 'blocked-uri': 'inline' }, { directive: 'script-src', blocked: 'inline', disposition: 'enforce' }],
  ['eval, reported only', { 'effective-directive': 'script-src', 'blocked-uri': 'eval', disposition: 'report' }, { directive: 'script-src', blocked: 'eval', disposition: 'report' }],
  ['a framing page', { 'effective-directive': 'frame-ancestors', 'blocked-uri': 'https://vault.example/hosted/card-form?session=x' }, { directive: 'frame-ancestors', blocked: 'https://vault.example', disposition: 'enforce' }],
  ['a directive not on the list', { 'effective-directive': `x-${newPan()}`, 'blocked-uri': 'data:' }, { directive: 'other', blocked: 'data', disposition: 'enforce' }],
  ['a blocked URI that is neither a web origin nor a keyword', { 'effective-directive': 'img-src', 'blocked-uri': `ftp://files.example/${newPan()}` }, { directive: 'img-src', blocked: 'other', disposition: 'enforce' }],
])('keeps %s to closed values', async (_, fields, expected) => {
  const before = await violations(expected);
  expect((await report(fields)).status).toBe(204);
  expect(h.captured.entries().filter((e) => e.csp !== undefined).pop()!.csp).toEqual(expected);
  expect(await violations(expected)).toBe(before + 1);
});

it('refuses what is not a CSP report with a problem document, counting nothing', async () => {
  const total = async () => (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'csp_violations_total')!.values.reduce((n, v) => n + v.value, 0);
  const before = await total();
  const json = await request(app).post('/hosted/csp-reports').set('X-Forwarded-For', from()).send({ 'csp-report': {} });
  expect(json.status).toBe(415);
  expect(json.body.code).toBe('unsupported_media_type');
  const malformed = await request(app).post('/hosted/csp-reports').set('X-Forwarded-For', from()).set('Content-Type', 'application/csp-report').send('{"csp-report":');
  expect(malformed.status).toBe(400);
  expect(malformed.body.code).toBe('malformed_json');
  const notReport = await request(app).post('/hosted/csp-reports').set('X-Forwarded-For', from()).set('Content-Type', 'application/csp-report').send('{"report":{}}');
  expect(notReport.status).toBe(400);
  expect(notReport.body.code).toBe('invalid_request');
  const pan = newPan();
  const huge = await report({ 'effective-directive': 'script-src', 'script-sample': `${pan} `.repeat(1000) });
  expect(huge.status).toBe(413);
  expect(huge.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.stringify(huge.body)).not.toContain(pan);
  const get = await request(app).get('/hosted/csp-reports');
  expect(get.status).toBe(405);
  expect(get.headers.allow).toBe('POST');
  expect(await total()).toBe(before);
});

it(`accepts ${CSP_REPORTS_PER_MINUTE} reports a minute from one address, then answers 429`, async () => {
  const ip = from();
  for (let i = 0; i < CSP_REPORTS_PER_MINUTE; i += 1) expect((await report({ 'effective-directive': 'style-src' }, ip)).status).toBe(204);
  const refused = await report({ 'effective-directive': 'style-src' }, ip);
  expect(refused.status).toBe(429);
  expect(refused.body.code).toBe('rate_limited');
  expect((await report({ 'effective-directive': 'style-src' }, from())).status).toBe(204);
});
