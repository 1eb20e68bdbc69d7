// openapi.json against the code: a well-formed 3.1 document whose routes, request schemas and error codes are the app's own.
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import request from 'supertest';
import { createApp } from '../../src/app';
import { CLIENT_SESSION_REQUEST } from '../../src/http/client-session-routes';
import { luhnValid } from '../../src/domain/pan';
import { AUDIT_ACTIONS } from '../../src/domain/ports';
import { describeError, ERROR_CODES, type ErrorCode } from '../../src/errors';
import { loadHostedAssets } from '../../src/hosted/assets';
import { formPolicy } from '../../src/hosted/form-page';
import openapiJson from '../../src/http/openapi.json';
import { DETOKENIZE_REQUEST, TOKENIZE_REQUEST, UPDATE_REQUEST } from '../../src/http/schemas';
import { ENROLLMENT_REQUEST, RUN_REQUEST, UPDATER_SETTINGS_REQUEST } from '../../src/http/updater-routes';
import { REDRIVE_REQUEST, WEBHOOK_ENDPOINT_REQUEST } from '../../src/http/webhook-routes';
import type { Logger } from '../../src/log';

type Json = Record<string, unknown>;

const doc = openapiJson as unknown as Json & { paths: Record<string, Json>; components: Record<string, Record<string, Json>> };

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const PUBLISHED_TEST_CARD = '4111111111111111';

/** Resolves a local JSON Pointer reference such as `#/components/schemas/Problem`; throws on anything else. */
function resolvePointer(ref: string): unknown {
  if (!ref.startsWith('#/')) throw new Error(`${ref} is not a reference inside the document`);
  return ref
    .slice(2)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, part) => {
      if (node === null || typeof node !== 'object' || !(part in node)) throw new Error(`${ref} does not resolve`);
      return (node as Json)[part];
    }, doc);
}

function deref<T = Json>(node: unknown): T {
  const ref = (node as { $ref?: unknown }).$ref;
  return (typeof ref === 'string' ? resolvePointer(ref) : node) as T;
}

function refsIn(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(refsIn);
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) => (key === '$ref' && typeof value === 'string' ? [value] : refsIn(value)));
}

interface Operation {
  path: string;
  method: string;
  op: Json & { responses: Record<string, unknown>; requestBody?: unknown; security?: unknown; parameters?: unknown[] };
}

const operations: Operation[] = Object.entries(doc.paths).flatMap(([path, item]) =>
  HTTP_METHODS.filter((method) => method in item).map((method) => ({ path, method, op: item[method] as Operation['op'] })),
);

/** Every example of a media type (request or response), references resolved. */
function examplesOf(content: unknown): Array<{ mediaType: string; schema: unknown; value: unknown }> {
  return Object.entries((content ?? {}) as Record<string, Json>).flatMap(([mediaType, media]) =>
    Object.values((media.examples ?? {}) as Record<string, unknown>).map((example) => ({
      mediaType,
      schema: media.schema,
      value: deref<{ value: unknown }>(example).value,
    })),
  );
}

function requestBodyOf({ op }: Operation): Json | undefined {
  return op.requestBody === undefined ? undefined : deref(op.requestBody);
}

function responsesOf({ op }: Operation): Array<{ status: string; response: Json }> {
  return Object.entries(op.responses).map(([status, response]) => ({ status, response: deref(response) }));
}

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

// --- the app's routes, read from Express 5's router stack -------------------------------------------------

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
  /** router ≥ 2.2 keeps the mount path of `router.use(path, ...)` as given. */
  rawPath?: unknown;
}

function toOpenApiPath(expressPath: string): string {
  const path = expressPath.replace(/\/+$/, '') || '/';
  if (/[*?(]/.test(path)) throw new Error(`${expressPath} uses Express path syntax this test does not translate`);
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** "METHOD /path" for every route handler; `router.all` layers only answer 405 and are listed apart. */
function routesOf(stack: Layer[], prefix = ''): { routes: string[]; catchAlls: string[] } {
  const routes: string[] = [];
  const catchAlls: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      const path = toOpenApiPath(prefix + layer.route.path);
      if (layer.route.methods._all) catchAlls.push(path);
      else routes.push(...Object.keys(layer.route.methods).map((method) => `${method.toUpperCase()} ${path}`));
    } else if (layer.handle.stack) {
      if (typeof layer.rawPath !== 'string') throw new Error('a nested router has no string mount path (router < 2.2?)');
      const nested = routesOf(layer.handle.stack, prefix + (layer.rawPath === '/' ? '' : layer.rawPath));
      routes.push(...nested.routes);
      catchAlls.push(...nested.catchAlls);
    }
  }
  return { routes, catchAlls };
}

const silentLog = { info: () => undefined, error: () => undefined } as unknown as Logger;

/**
 * Building the app does no network or database I/O, so the vault, principals and page sessions are never touched
 * here; the hosted page's browser files are read from src/hosted/assets, as at startup.
 */
function buildApp() {
  return createApp({
    vault: {} as never,
    principals: {} as never,
    clientSessions: {} as never,
    audit: {} as never,
    auditService: {} as never,
    clientEncryption: {} as never,
    log: silentLog,
    readiness: async () => ({ ready: true, checks: {} }),
    bodyLimitBytes: 16 * 1024,
    trustProxy: false,
    hostedPage: { pageSessions: {} as never, assets: loadHostedAssets() },
    webhooks: {} as never,
    updater: {} as never,
  });
}

// --- tests ----------------------------------------------------------------------------------------------

describe('openapi.json is a well-formed OpenAPI 3.1 document', () => {
  it('declares OpenAPI 3.1.0, cardvault 0.1.0, and bearer API-key security for every operation by default', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'cardvault', version: '0.1.0' });
    expect(doc.servers).toEqual([expect.objectContaining({ url: 'http://localhost:8080' })]);
    expect(doc.components.securitySchemes!.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
  });

  it('gives every operation a unique operationId and at least one response', () => {
    expect(operations.length).toBeGreaterThan(0);
    for (const { op } of operations) expect(Object.keys(op.responses).length).toBeGreaterThan(0);
    const ids = operations.map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('resolves every $ref inside the document', () => {
    const refs = refsIn(doc);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect(() => resolvePointer(ref)).not.toThrow();
  });

  it('declares every path template variable as a required path parameter', () => {
    for (const { path, op } of operations) {
      const declared = [...((doc.paths[path]!.parameters as unknown[]) ?? []), ...(op.parameters ?? [])]
        .map((p) => deref<{ name: string; in: string; required?: boolean }>(p))
        .filter((p) => p.in === 'path' && p.required === true)
        .map((p) => p.name);
      const variables = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect(declared.sort()).toEqual(variables.sort());
    }
  });

  it.each(Object.keys(doc.components.schemas!))('compiles components.schemas.%s as JSON Schema 2020-12', (name) => {
    expect(() => ajv.compile(doc.components.schemas![name]!)).not.toThrow();
  });

  it('has examples that satisfy their schemas', () => {
    const failures: string[] = [];
    let checked = 0;
    for (const operation of operations) {
      const responses = responsesOf(operation).map(({ status, response }) => ({ where: status, content: response.content }));
      for (const { where, content } of [{ where: 'request', content: requestBodyOf(operation)?.content }, ...responses]) {
        for (const { schema, value } of examplesOf(content)) {
          const validate = ajv.compile(deref(schema));
          checked += 1;
          if (!validate(value)) failures.push(`${operation.method} ${operation.path} ${where}: ${ajv.errorsText(validate.errors)}`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(checked).toBeGreaterThan(operations.length);
  });
});

describe('openapi.json matches the app', () => {
  const app = routesOf(buildApp().router.stack as unknown as Layer[]);

  it('documents exactly the (method, path) pairs the Express app registers', () => {
    const documented = operations.map(({ method, path }) => `${method.toUpperCase()} ${path}`);
    expect(app.routes.sort()).toEqual(documented.sort());
  });

  it('has a 405 catch-all on every documented path', () => {
    expect([...new Set(app.catchAlls)].sort()).toEqual(Object.keys(doc.paths).sort());
  });

  it('leaves exactly the service routes and the hosted form page and its files unauthenticated', () => {
    const open = operations.filter(({ op }) => Array.isArray(op.security) && op.security.length === 0);
    expect(open.map(({ method, path }) => `${method.toUpperCase()} ${path}`).sort()).toEqual(
      [
        'GET /.well-known/jwks.json',
        'GET /healthz',
        'GET /openapi.json',
        'GET /readyz',
        // The hosted form page (its session in the query is its credential) and the public files it and merchants load.
        'GET /hosted/card-form',
        'GET /hosted/form.css',
        'GET /hosted/form.js',
        'GET /hosted/sdk.js',
        'GET /hosted/sdk.json',
        'GET /hosted/sdk/{file}',
        // Browsers report CSP violations on the form with no credential.
        'POST /hosted/csp-reports',
      ].sort(),
    );
    // The hosted form's one call authenticates with a single-use client session instead of an API key.
    const hosted = operations.filter(({ method, path }) => method === 'post' && path === '/hosted/tokens');
    expect(hosted).toHaveLength(1);
    expect(hosted[0]!.op.security).toEqual([{ clientSession: [] }]);
    expect(doc.components.securitySchemes!.clientSession).toMatchObject({ type: 'http', scheme: 'ClientSession' });
    for (const { op } of operations.filter((o) => !open.includes(o) && !hosted.includes(o))) expect(op.security).toBeUndefined();
  });

  it('carries the request schemas of src/http/schemas.ts unchanged', () => {
    expect(doc.components.schemas!.TokenizeRequest).toEqual(TOKENIZE_REQUEST);
    expect(doc.components.schemas!.UpdateRequest).toEqual(UPDATE_REQUEST);
    expect(doc.components.schemas!.DetokenizeRequest).toEqual(DETOKENIZE_REQUEST);
    expect(doc.components.schemas!.ClientSessionRequest).toEqual(CLIENT_SESSION_REQUEST);
    expect(doc.components.schemas!.WebhookEndpointRequest).toEqual(WEBHOOK_ENDPOINT_REQUEST);
    expect(doc.components.schemas!.RedriveRequest).toEqual(REDRIVE_REQUEST);
    expect(doc.components.schemas!.UpdaterSettingsRequest).toEqual(UPDATER_SETTINGS_REQUEST);
    expect(doc.components.schemas!.EnrollmentRequest).toEqual(ENROLLMENT_REQUEST);
    expect(doc.components.schemas!.RunRequest).toEqual(RUN_REQUEST);
  });

  it('states the hosted form page Content-Security-Policy exactly as formPolicy writes it, report-uri included', () => {
    const page = doc.paths['/hosted/card-form']!.get as { responses: Record<string, { headers: Record<string, unknown> }> };
    const header = deref<{ description: string; schema: { examples: string[] } }>(page.responses['200']!.headers['Content-Security-Policy']);
    expect(header.schema.examples).toEqual([formPolicy(['https://shop.example'])]);
    expect(header.description).toContain(`\`${formPolicy(['<origins>'])}\``);
  });

  it('lists every error code of src/errors.ts in the Problem schema, and no other', () => {
    const codes = (doc.components.schemas!.Problem as { properties: { code: { enum: string[] } } }).properties.code.enum;
    expect(codes).toHaveLength(new Set(codes).size);
    expect(new Set(codes)).toEqual(new Set(ERROR_CODES));
  });

  it('lists every audit action of src/domain/ports.ts in the AuditEvent schema, and no other', () => {
    const actions = (doc.components.schemas!.AuditEvent as { properties: { action: { enum: string[] } } }).properties.action.enum;
    expect(actions).toHaveLength(new Set(actions).size);
    expect(new Set(actions)).toEqual(new Set(AUDIT_ACTIONS));
  });

  it('shows each problem example under its own status, with its catalogued title and type', () => {
    for (const operation of operations) {
      for (const { status, response } of responsesOf(operation)) {
        for (const { mediaType, value } of examplesOf(response.content)) {
          if (mediaType !== 'application/problem+json') continue;
          const problem = value as { code: ErrorCode; status: number; title: string; type: string };
          const catalogued = describeError(problem.code);
          const at = `${operation.method} ${operation.path} ${status} ${problem.code}`;
          expect({ at, status: Number(status), body: { status: problem.status, title: problem.title, type: problem.type } }).toEqual({
            at,
            status: catalogued.status,
            body: { ...catalogued, type: `urn:cardvault:problem:${problem.code}` },
          });
        }
      }
    }
  });

  it('uses only the published test card in requests and shows a PAN in no response but detokenize', () => {
    for (const operation of operations) {
      for (const { value } of examplesOf(requestBodyOf(operation)?.content)) {
        const number = (value as { card?: { number?: string } }).card?.number;
        if (number !== undefined) expect(number).toBe(PUBLISHED_TEST_CARD);
      }
      for (const { status, response } of responsesOf(operation)) {
        if (operation.op.operationId === 'detokenize' && status === '200') continue;
        const text = JSON.stringify(examplesOf(response.content).map((e) => e.value));
        const panLike = (text.match(/[0-9]{12,19}/g) ?? []).filter(luhnValid);
        expect({ at: `${operation.method} ${operation.path} ${status}`, panLike }).toEqual({ at: expect.any(String), panLike: [] });
      }
    }
  });

  it('serves this same document at GET /openapi.json without authentication', async () => {
    const res = await request(buildApp()).get('/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual(openapiJson);
  });
});
