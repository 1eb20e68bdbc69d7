// Rate limits on express-rate-limit: per API key and action, and per source address on failed authentication; 429 as problem+json.
import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit, type ClientRateLimitInfo, type Options, type Store } from 'express-rate-limit';
import { ACTIONS, rateLimitOf, type Action } from '../domain/policy';
import { VaultError } from '../errors';
import type { Logger } from '../log';
import { principalOf } from './authenticate';
import { sendProblem, UNAUTHENTICATED } from './problem';

const WINDOW_MS = 60_000;
/** Failed authentications one source address may make per minute; then it is turned away before any key lookup. */
export const FAILED_AUTH_PER_MINUTE = 20;
/** CSP violation reports one source address may send per minute: a page that breaks its policy sends a handful. */
export const CSP_REPORTS_PER_MINUTE = 30;

export interface RateLimiters {
  /** Counts the request against its API key's budget for `action`; mount after authenticate. */
  forAction(action: Action): RequestHandler;
  /** Mount before authenticate. */
  failedAuth: RequestHandler;
  /** Per source address, on the unauthenticated CSP report endpoint. */
  cspReports: RequestHandler;
}

/** One store per limiter: express-rate-limit refuses a store shared between two limiters. */
export interface LimiterStores {
  store(name: string): Store & { get(key: string): Promise<ClientRateLimitInfo | undefined> };
}

export function rateLimiters(deps: {
  stores: LimiterStores;
  log: Logger;
  /** Told of each 429 with the action refused (or `failed_auth`), for metrics. */
  onReject?: (action: string) => void;
}): RateLimiters {
  const common = (name: string): Partial<Options> => ({
    windowMs: WINDOW_MS,
    // RateLimit and RateLimit-Policy (draft 08); express-rate-limit sets Retry-After itself before calling the handler.
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    identifier: name,
    handler: (_req, res) => {
      deps.onReject?.(name);
      sendProblem(res, new VaultError('rate_limited'));
    },
    // Our key generators never reach its address checks (trust proxy is ours to set, from TRUST_PROXY); anything
    // else it finds goes to our redacting logger rather than the console.
    logger: {
      error: (err, message) => deps.log.error({ err }, message ?? 'rate limiter error'),
      warn: (err, message) => deps.log.warn({ err }, message ?? 'rate limiter warning'),
    },
  });
  const byAction = new Map(ACTIONS.map((action) => [action, limitByPrincipal(action, deps.stores, common(action))]));
  return {
    forAction: (action) => byAction.get(action)!,
    failedAuth: limitFailedAuth(deps.stores, common('failed_auth'), deps.log),
    cspReports: rateLimit({
      ...common('csp_reports'),
      store: deps.stores.store('csp_reports'),
      limit: CSP_REPORTS_PER_MINUTE,
      keyGenerator: (req) => ipKeyGenerator(req.ip ?? 'unknown'),
    }),
  };
}

/** Keyed by API key id (a uuid, never the secret), with the limit the key's role sets for this action. */
function limitByPrincipal(action: Action, stores: LimiterStores, common: Partial<Options>): RequestHandler {
  return rateLimit({
    ...common,
    store: stores.store(action),
    keyGenerator: (_req, res) => principalOf(res).apiKeyId,
    limit: (_req, res) => rateLimitOf(principalOf(res).role, action),
  });
}

/**
 * Only failures are counted, when a 401 is sent (also to a client that hung up before it). Counting every request
 * and giving back the successful ones (skipSuccessfulRequests) would count requests in flight, so a busy client
 * behind one address would be refused.
 */
function limitFailedAuth(stores: LimiterStores, common: Partial<Options>, log: Logger): RequestHandler {
  const store = stores.store('failed_auth');
  const addressOf = (req: Request) => ipKeyGenerator(req.ip ?? 'unknown');
  const turnAway = rateLimit({
    ...common,
    store,
    limit: FAILED_AUTH_PER_MINUTE,
    keyGenerator: (req) => addressOf(req),
    // An address with failures to spare passes untouched; one that has used them all is counted and refused.
    skip: async (req) => ((await store.get(addressOf(req)))?.totalHits ?? 0) < FAILED_AUTH_PER_MINUTE,
  });
  return (req, res, next) => {
    let counted = false;
    const count = () => {
      if (counted) return;
      counted = true;
      Promise.resolve(store.increment(addressOf(req))).catch((err: unknown) => log.error({ err }, 'failed authentication not counted'));
    };
    // As the 401 is sent, whether or not the client is still there to read it: hanging up before the answer must
    // not buy a key lookup and an auth.failure event uncounted.
    res.once(UNAUTHENTICATED, count);
    // A 401 not sent as problem+json (the hosted form page's HTML), once it has gone out.
    res.once('finish', () => {
      if (res.statusCode === 401) count();
    });
    return turnAway(req, res, next);
  };
}
