// Runs a use case and records its audit event: success only once committed, denials and failures as well.
import { isVaultError } from '../errors';
import type { Principal } from './policy';
import { recordableToken } from './token';
import type { AuditAction, AuditTrail, RequestContext } from './ports';

export interface AuditedResult<T> {
  result: T;
  token?: string | null;
  details?: Record<string, unknown>;
}

/**
 * The success event is awaited before the result is returned: if it cannot be committed the caller gets
 * audit_unavailable and nothing else. A denial or failure is recorded too, but the original error wins.
 */
export async function audited<T>(
  trail: AuditTrail,
  principal: Principal,
  ctx: RequestContext,
  action: AuditAction,
  token: string | null,
  work: () => Promise<AuditedResult<T>>,
): Promise<T> {
  const base = { tenantId: principal.tenant.id, principal: principal.apiKeyId, source: ctx.source, requestId: ctx.requestId };
  let done: AuditedResult<T>;
  try {
    done = await work();
  } catch (err) {
    const code = isVaultError(err) ? err.code : 'internal_error';
    const denied = code === 'forbidden' || code === 'purpose_not_allowed';
    await trail
      .record({
        ...base,
        action: denied ? 'auth.denied' : action,
        outcome: denied ? 'denied' : 'failure',
        token: recordableToken(token),
        details: denied ? { attempted: action, code } : { code },
      })
      .catch(() => undefined);
    throw err;
  }
  await trail.record({ ...base, action, outcome: 'success', token: done.token ?? token, details: done.details ?? {} });
  return done.result;
}
