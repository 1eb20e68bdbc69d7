// Bearer API key → principal, stored on res.locals for the handlers; every failure is the same 401.
import type { RequestHandler, Response } from 'express';
import type { Principal } from '../domain/policy';
import type { Principals } from '../domain/principals';
import { VaultError } from '../errors';

const BEARER = /^Bearer ([!-~]{1,200})$/;

export function authenticate(principals: Principals): RequestHandler {
  return async (req, res, next) => {
    const match = BEARER.exec(req.headers.authorization ?? '');
    if (!match) throw new VaultError('unauthenticated');
    res.locals.principal = await principals.authenticate(match[1]!);
    next();
  };
}

export function principalOf(res: Response): Principal {
  return res.locals.principal as Principal;
}
