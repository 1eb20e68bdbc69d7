// Each route's action, checked before the route reads its input: a key whose role lacks it gets 403, audited.
import type { RequestHandler } from 'express';
import { grants, notGranted, type Action } from '../domain/policy';
import type { AuditAction, AuditTrail } from '../domain/ports';
import { contextOf, principalOf } from './authenticate';
import { undecodablePath } from './path-encoding';
import type { RateLimiters } from './rate-limit';
import { recordableToken } from '../domain/token';
import { tokenOrUndefined } from './tokens';

/**
 * The guard a route puts first: `allow('detokenize', 'card.detokenize')`. `attempted` names the refused request in
 * the `auth.denied` event, with the vocabulary of the event the request would have written.
 */
export type Allow = (action: Action, attempted: AuditAction) => RequestHandler;

const noBody: RequestHandler = (_req, _res, next) => next();

export interface AllowOptions {
  /** The body reader of the route whose requests `attempted` names; absent, no body is read. */
  readBody?: (attempted: AuditAction) => RequestHandler;
  /** Each action's per-key limiter; absent, nothing is limited. */
  limits?: Pick<RateLimiters, 'forAction'>;
}

/** `first`, then, unless it failed, `rest`: a step that throws instead of calling next fails the same way. */
function andThen(first: RequestHandler, rest: RequestHandler): RequestHandler {
  return (req, res, next) =>
    first(req, res, (err?: unknown) => {
      if (err) return next(err);
      try {
        rest(req, res, next);
      } catch (thrown) {
        next(thrown);
      }
    });
}

/**
 * Checking the role only inside each use case let a key without the action learn the request schema and which
 * tokens exist (400 and 404 came first) and left those refusals, and the unaudited reads', out of the audit log.
 * The use cases still check: this only comes first. Once the action is granted, the request counts against the
 * key's limit for it, and only then is its input read: the path (path-encoding.ts), then the body, with
 * `readBody(attempted)`. Read before the role check, a body that did not parse (400, 413, 415, invalid_jwe) was
 * answered instead of the refusal, and went unaudited; read before the limit, a key over it still had each JSON
 * body parsed and each JWE decrypted (an RSA operation) before its 429.
 */
export function allowOnly(audit: AuditTrail, options: AllowOptions = {}): Allow {
  const readBody = options.readBody ?? (() => noBody);
  return (action, attempted) => {
    const read = readBody(attempted);
    const readInput: RequestHandler = (req, res, next) => {
      // A path that did not decode is the caller's mistake to hear about only once the route is theirs to use.
      const badPath = undecodablePath(res);
      if (badPath) next(badPath);
      else read(req, res, next);
    };
    const granted = options.limits ? andThen(options.limits.forAction(action), readInput) : readInput;
    return (req, res, next) => {
      const principal = principalOf(res);
      // Synchronous up to the limiter when allowed, as nearly every request is: a refusal waits for its audit event.
      if (grants(principal, action)) {
        granted(req, res, next);
        return;
      }
      const { requestId, source } = contextOf(req, res);
      audit
        .record({
          tenantId: principal.tenant.id,
          principal: principal.apiKeyId,
          action: 'auth.denied',
          outcome: 'denied',
          source,
          requestId,
          token: recordableToken(tokenOrUndefined(req.params.token)),
          details: { attempted, code: 'forbidden' },
        })
        .catch(() => undefined)
        .then(() => next(notGranted(action)));
    };
  };
}
