// Each route's action, checked before the route reads its input: a key whose role lacks it gets 403, audited.
import type { RequestHandler } from 'express';
import type { Action } from '../domain/policy';
import type { AuditAction, AuditTrail } from '../domain/ports';
import { VaultError } from '../errors';
import { contextOf, principalOf } from './authenticate';
import { tokenParam } from './tokens';

/**
 * The guard a route puts first: `allow('detokenize', 'card.detokenize')`. `attempted` names the refused request in
 * the `auth.denied` event, with the vocabulary of the event the request would have written.
 */
export type Allow = (action: Action, attempted: AuditAction) => RequestHandler;

/**
 * Checking the role only inside each use case let a key without the action learn the request schema and which
 * tokens exist (400 and 404 came first) and left those refusals, and the unaudited reads', out of the audit log.
 * The use cases still check: this only comes first.
 */
export function allowOnly(audit: AuditTrail): Allow {
  return (action, attempted) => async (req, res, next) => {
    const principal = principalOf(res);
    if (principal.role.actions.has(action)) return next();
    const { requestId, source } = contextOf(req, res);
    await audit
      .record({
        tenantId: principal.tenant.id,
        principal: principal.apiKeyId,
        action: 'auth.denied',
        outcome: 'denied',
        source,
        requestId,
        token: tokenOf(req.params.token),
        details: { attempted, code: 'forbidden' },
      })
      .catch(() => undefined);
    throw new VaultError('forbidden', `this key's role does not grant ${action}`);
  };
}

/** The path's token when it is one; never a value that could be a card number sent by mistake. */
function tokenOf(value: unknown): string | null {
  if (value === undefined) return null;
  try {
    return tokenParam(value);
  } catch {
    return null;
  }
}
