// createApp(deps): security headers, body limits, routes and the error mapper; no I/O of its own.
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import type { AuditService } from './audit/audit-service';
import type { ClientEncryptionKeys } from './crypto/client-encryption';
import type { AuditTrail } from './domain/ports';
import type { Principals } from './domain/principals';
import type { ClientSessions } from './domain/client-sessions';
import { clientSessionAuth, clientSessionRoutes, recordSessionToken } from './http/client-session-routes';
import { auditRoutes, jwksRoute } from './http/audit-routes';
import type { Vault } from './domain/vault';
import { VaultError } from './errors';
import { mayHoldCardNumberAcrossPunctuation } from './domain/pan';
import { randomLetterId } from './crypto/random';
import { authenticate } from './http/authenticate';
import { allowOnly } from './http/authorize';
import { jsonBodies } from './http/json-body';
import { joseBodies } from './http/jose-body';
import { keepUndecodablePaths } from './http/path-encoding';
import { methodNotAllowed, problemHandler, sendProblem } from './http/problem';
import type { RateLimiters } from './http/rate-limit';
import { serviceRoutes, type ReadinessCheck } from './http/service-routes';
import { hostedTokenizeHandler, tokenRoutes } from './http/tokens';
import { hostedPageRoutes, type HostedPageDeps } from './hosted/http/hosted-page-routes';
import { cspReportRoutes } from './hosted/http/csp-report-routes';
import type { Logger } from './log';
import type { VaultMetrics } from './metrics/metrics';
import { continueTrace, formatTraceparent } from './http/trace-context';
import type { WebhookEndpoints } from './updater/webhooks/webhook-endpoints';
import { webhookDeliveryRoutes, webhookEndpointRoutes } from './http/webhook-routes';
import type { AccountUpdater } from './updater/account-updater';
import { cardUpdaterRoutes, updaterRoutes } from './http/updater-routes';

export interface AppDeps {
  vault: Vault;
  principals: Principals;
  /** Single-use grants for the hosted card form: POST /v1/client-sessions, POST /hosted/tokens. */
  clientSessions: ClientSessions;
  audit: AuditTrail;
  auditService: AuditService;
  /** Decrypts application/jose tokenize bodies; its public keys join the checkpoint keys in the JWKS. */
  clientEncryption: Pick<ClientEncryptionKeys, 'decrypt' | 'jwks'>;
  log: Logger;
  readiness: ReadinessCheck;
  bodyLimitBytes: number;
  trustProxy: false | number;
  /** Absent: no rate limiting (tests that are not about it, and RATE_LIMITS=off). */
  rateLimits?: RateLimiters;
  /** The hosted card form page and the merchant SDK (src/hosted/); absent, only POST /hosted/tokens is served. */
  hostedPage?: HostedPageDeps;
  /** Merchant webhook endpoints and deliveries (/v1/webhook-endpoints, /v1/webhook-deliveries); absent, not served. */
  webhooks?: WebhookEndpoints;
  /** The account updater (/v1/account-updater, /v1/tokens/{token}/account-updater|refresh|updates); absent, not served. */
  updater?: AccountUpdater;
  /** Counts and times each response by route template, and counts reported CSP violations (served on METRICS_PORT, never here); absent, nothing is counted. */
  metrics?: Pick<VaultMetrics, 'request' | 'cspViolation'>;
  /**
   * True once the process is shutting down: every response then says `Connection: close`, so a keep-alive
   * connection that is never idle (an ingress, a pooled client) closes after its next answer instead of being
   * cut off, request and all, when the grace period ends.
   */
  draining?: () => boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** 128 random bits spelled in letters only, so the log's PAN scrubber can never mistake an id for a card. */
const newRequestId = () => randomLetterId(16);

const ROUTE_TEMPLATE = Symbol('cardvault.routeTemplate');
type RoutedRequest = express.Request & { [ROUTE_TEMPLATE]?: string };

/**
 * Records the template of the route that serves a request (metrics and request logs label by it; the URL carries
 * tokens) at the moment Express matches it: `req.route` is set then, while `req.baseUrl` is still the router's
 * mount path. An error a route throws unwinds to the app's handler, which resets `baseUrl` to '' and would turn
 * '/v1/tokens/:token/detokenize' into '/:token/detokenize'. Routing ignores case but baseUrl keeps the caller's,
 * so it is lowercased (every mount path is): '/HoStEd/tokens' must not be a label series of its own.
 */
function recordRouteTemplates(request: express.Request): void {
  const route = Symbol('cardvault.route');
  Object.defineProperty(request, 'route', {
    configurable: true,
    get(this: RoutedRequest & { [route]?: { path: string } }) {
      return this[route];
    },
    set(this: RoutedRequest & { [route]?: { path: string } }, value: { path: string } | undefined) {
      this[route] = value;
      if (value) this[ROUTE_TEMPLATE] = `${this.baseUrl.toLowerCase()}${value.path}`;
    },
  });
}

/**
 * Once the process is stopping, every answer says `Connection: close`, decided as its head is written: an answer
 * to a request that arrived before stopping began too, which would otherwise leave its keep-alive connection
 * idle until the grace period cuts it, racing the client's next request. Set on the app's response prototype.
 */
function closeConnectionsWhenDraining(response: express.Response, draining: () => boolean): void {
  const writeHead = response.writeHead;
  response.writeHead = function (this: express.Response, ...args: unknown[]) {
    if (draining() && !this.headersSent) this.setHeader('Connection', 'close');
    return Reflect.apply(writeHead, this, args) as express.Response;
  } as typeof writeHead;
}

function requestContext(log: Logger, metrics: AppDeps['metrics']): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('X-Request-Id');
    // A caller's id is kept only if it cannot carry a card number: it is written to logs and the audit trail.
    const requestId = incoming && REQUEST_ID.test(incoming) && !mayHoldCardNumberAcrossPunctuation(incoming) ? incoming : newRequestId();
    res.locals.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    // The caller's trace continued with a span of ours, or a new trace; the header echoed is rebuilt, never the raw one.
    const trace = continueTrace(req.get('traceparent'), req.get('tracestate'));
    res.locals.trace = trace;
    res.setHeader('traceparent', formatTraceparent(trace));
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const principal = res.locals.principal;
      const route = (req as RoutedRequest)[ROUTE_TEMPLATE] ?? 'unmatched';
      const elapsedNs = Number(process.hrtime.bigint() - started);
      metrics?.request(req.method, route, res.statusCode, elapsedNs / 1e9);
      log.info(
        {
          request_id: requestId,
          trace_id: trace.traceId,
          span_id: trace.spanId,
          method: req.method,
          route,
          status: res.statusCode,
          // Whole microseconds: at most 3 decimals, so no digit run (dots join them, log.ts) the PAN scrubber would
          // mask until a request lasts 10^8 ms.
          duration_ms: Math.round(elapsedNs / 1e3) / 1e3,
          tenant: principal?.tenant.name,
          api_key_id: principal?.apiKeyId,
        },
        'request',
      );
    });
    next();
  };
}

/**
 * helmet's headers, worked out once: with these options every one of its middlewares sets a fixed value, so the
 * result is captured at start-up and set in one call per request instead of a dozen middleware steps.
 */
function securityHeaders(options: Parameters<typeof helmet>[0]): RequestHandler {
  const headers = new Map<string, string>();
  let finished = false;
  const probe = {
    setHeader: (name: string, value: string) => headers.set(name, String(value)),
    removeHeader: (name: string) => headers.delete(name),
  };
  helmet(options)({} as never, probe as never, (err?: unknown) => {
    finished = err === undefined;
  });
  // A helmet that did not finish at once, or set nothing, depends on the request: it would be wrong to cache.
  if (!finished || headers.size === 0) throw new Error('helmet did not produce a fixed set of headers');
  return (_req, res, next) => {
    res.setHeaders(headers);
    next();
  };
}

const noStore: RequestHandler = (_req, res, next) => {
  res.setHeader('Cache-Control', 'no-store');
  next();
};

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.set('trust proxy', deps.trustProxy);
  app.set('etag', false);
  app.disable('x-powered-by');
  recordRouteTemplates(app.request);
  if (deps.draining) closeConnectionsWhenDraining(app.response, deps.draining);

  app.use(requestContext(deps.log, deps.metrics));
  app.use(
    securityHeaders({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      frameguard: { action: 'deny' },
    }),
  );

  const api = express.Router();
  api.use(noStore);
  // An address that keeps failing authentication is refused before its next key is even looked up.
  if (deps.rateLimits) api.use(deps.rateLimits.failedAuth);
  // Authenticate before reading a body: an anonymous caller cannot make the vault parse anything.
  api.use(authenticate(deps.principals, deps.audit));
  // Express would answer a path parameter that does not decode with 400 before the route's role check runs.
  api.use(keepUndecodablePaths);
  // Nor can a key whose role lacks the route's action, or one over its limit for it: allowOnly counts the request
  // against the limit once the action is granted, and reads the body only once the limit allows it.
  // Tokenize alone also takes its body as a JWE to the vault's key (hosted form, backends): application/jose.
  const json = jsonBodies(deps.bodyLimitBytes);
  const jose = joseBodies(deps.clientEncryption, deps.bodyLimitBytes, 'tenant');
  const tokenizeBody: RequestHandler = (req, res, next) => jose(req, res, (err?: unknown) => (err ? next(err) : json(req, res, next)));
  // The card routes first: they carry nearly all traffic, and no other router serves their paths.
  // Every route checks its action first, then its limit, before it reads the body or the token.
  const allow = allowOnly(deps.audit, {
    readBody: (attempted) => (attempted === 'card.tokenize' ? tokenizeBody : json),
    limits: deps.rateLimits,
  });
  api.use('/tokens', tokenRoutes(deps.vault, allow));
  if (deps.updater) {
    api.use('/account-updater', updaterRoutes(deps.updater, allow));
    api.use('/tokens', cardUpdaterRoutes(deps.updater, allow));
  }
  api.use('/audit', auditRoutes(deps.auditService, allow));
  api.use('/client-sessions', clientSessionRoutes(deps.clientSessions, allow));
  if (deps.webhooks) {
    api.use('/webhook-endpoints', webhookEndpointRoutes(deps.webhooks, allow));
    api.use('/webhook-deliveries', webhookDeliveryRoutes(deps.webhooks, allow));
  }
  app.use('/v1', api);
  // After /v1, so the API's requests do not step through these routers first.
  app.use(serviceRoutes(deps.readiness));
  app.use(
    jwksRoute({
      // One key set: the encryption keys (the one to encrypt to first), then the checkpoint signing keys.
      jwks: async () => {
        const [encryption, signing] = await Promise.all([deps.clientEncryption.jwks(), deps.auditService.jwks()]);
        return { keys: [...encryption.keys, ...signing.keys] };
      },
    }),
  );

  // The hosted card form's one call: tokenize with a single-use client session instead of an API key. Only
  // this route: redeeming uses the session up, so no other path may ever reach clientSessionAuth.
  const hostedTokens = express.Router();
  hostedTokens.post(
    '/',
    // Redeemed before the body is read, as /v1 checks the API key first, and limited before it too.
    clientSessionAuth(deps.clientSessions),
    deps.rateLimits?.forAction('tokenize') ?? ((_req, _res, next) => next()),
    joseBodies(deps.clientEncryption, deps.bodyLimitBytes, 'session'),
    jsonBodies(deps.bodyLimitBytes),
    hostedTokenizeHandler(deps.vault, recordSessionToken(deps.clientSessions)),
  );
  hostedTokens.all('/', methodNotAllowed('POST'));
  const hosted = express.Router();
  hosted.use(noStore);
  if (deps.rateLimits) hosted.use(deps.rateLimits.failedAuth);
  hosted.use('/tokens', hostedTokens);
  if (deps.hostedPage) {
    // Where browsers report what the form's policy blocked (its report-uri).
    hosted.use(
      '/csp-reports',
      cspReportRoutes({
        log: deps.log,
        onViolation: deps.metrics && ((v) => deps.metrics!.cspViolation(v.directive, v.disposition)),
        limit: deps.rateLimits?.cspReports,
      }),
    );
    // The one route that replaces the global frame-ancestors 'none', with the session's own origins.
    hosted.use(hostedPageRoutes(deps.hostedPage, deps.log));
  }
  app.use('/hosted', hosted);

  app.use((_req, res) => {
    sendProblem(res, new VaultError('not_found'));
  });
  app.use(problemHandler(deps.log));
  return app;
}
