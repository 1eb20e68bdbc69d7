// Each route's action, checked before the route reads its input: a key whose role lacks it gets 403, audited.
import type { RequestHandler } from 'express';
import { grants, notGranted, type Action } from '../domain/policy';
import type { AuditAction, AuditTrail } from '../domain/ports';
import { contextOf, principalOf } from './authenticate';
import { undecodablePath } from './path-encoding';
import { recordableToken } from '../domain/token';
import { tokenOrUndefined } from './tokens';

/**
 * The guard a route puts first: `allow('detokenize', 'card.detokenize')`. `attempted` names the refused request in
 * the `auth.denied` event, with the vocabulary of the event the request would have written.
 */
export type Allow = (action: Action, attempted: AuditAction) => RequestHandler;

const noBody: RequestHandler = (_req, _res, next) => next();

/**
 * Checking the role only inside each use case let a key without the action learn the request schema and which
 * tokens exist (400 and 404 came first) and left those refusals, and the unaudited reads', out of the audit log.
 * The use cases still check: this only comes first. `readBody(attempted)` reads the body of that route's requests,
 * once the action is granted: read before, a body that did not parse (400, 413, 415, invalid_jwe) was answered
 * instead of the refusal, and went unaudited.
 */
export function allowOnly(audit: AuditTrail, readBody: (attempted: AuditAction) => RequestHandler = () => noBody): Allow {
  return (action, attempted) => {
    const read = readBody(attempted);
    return (req, res, next) => {
      const principal = principalOf(res);
      // Synchronous when allowed, as nearly every request is: only a refusal waits, for its audit event.
      if (grants(principal, action)) {
        // A path that did not decode is the caller's mistake to hear about only once the route is theirs to use.
        const badPath = undecodablePath(res);
        if (badPath) next(badPath);
        else read(req, res, next);
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
