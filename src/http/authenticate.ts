// Bearer API key → principal, stored on res.locals for the handlers; every failure is the same 401, and audited.
import type { Request, RequestHandler, Response } from 'express';
import type { Principal } from '../domain/policy';
import type { Principals } from '../domain/principals';
import type { AuditTrail, RequestContext } from '../domain/ports';
import { isVaultError, VaultError } from '../errors';

const BEARER = /^Bearer ([!-~]{1,200})$/;

export function authenticate(principals: Principals, trail: AuditTrail): RequestHandler {
  return async (req, res, next) => {
    const match = BEARER.exec(req.headers.authorization ?? '');
    try {
      if (!match) throw new VaultError('unauthenticated');
      res.locals.principal = await principals.authenticate(match[1]!);
    } catch (err) {
      if (isVaultError(err, 'unauthenticated')) {
        const reason = req.headers.authorization === undefined ? 'missing_credentials' : match ? 'unknown_or_revoked_key' : 'malformed_credentials';
        const ctx = contextOf(req, res);
        await trail
          .record({ tenantId: null, principal: 'anonymous', action: 'auth.failure', outcome: 'failure', ...ctx, details: { reason } })
          .catch(() => undefined);
      }
      throw err;
    }
    next();
  };
}

export function principalOf(res: Response): Principal {
  return res.locals.principal as Principal;
}

export function contextOf(req: Request, res: Response): RequestContext {
  return { requestId: (res.locals.requestId as string | undefined) ?? null, source: req.ip ?? null };
}
