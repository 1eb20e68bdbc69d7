// Bearer API key → principal, stored on res.locals for the handlers; every failure is the same 401, and audited.
import type { Request, RequestHandler, Response } from 'express';
import type { Principal } from '../domain/policy';
import type { Principals } from '../domain/principals';
import type { AuditTrail, RequestContext } from '../domain/ports';
import { VaultError } from '../errors';

// The scheme in any case (RFC 9110 §11.1); the key itself is matched exactly, by its hash.
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] ([!-~]{1,200})$/;

export function authenticate(principals: Principals, trail: AuditTrail): RequestHandler {
  return async (req, res, next) => {
    const header = req.headers.authorization;
    const match = BEARER.exec(header ?? '');
    const identified = match
      ? await principals.identify(match[1]!)
      : { refused: { reason: header === undefined ? ('missing_credentials' as const) : ('malformed_credentials' as const) } };
    if ('principal' in identified) {
      res.locals.principal = identified.principal;
      next();
      return;
    }
    // Answered alike; recorded against a revoked key and its tenant, anonymously otherwise.
    const { refused } = identified;
    const who = refused.reason === 'revoked_key' ? { tenantId: refused.tenantId, principal: refused.apiKeyId } : { tenantId: null, principal: 'anonymous' };
    await trail
      .record({ ...who, action: 'auth.failure', outcome: 'failure', ...contextOf(req, res), details: { reason: refused.reason } })
      .catch(() => undefined);
    throw new VaultError('unauthenticated');
  };
}

export function principalOf(res: Response): Principal {
  return res.locals.principal as Principal;
}

export function contextOf(req: Request, res: Response): RequestContext {
  return { requestId: (res.locals.requestId as string | undefined) ?? null, source: req.ip ?? null };
}
