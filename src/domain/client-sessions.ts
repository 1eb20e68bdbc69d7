// Client sessions for the hosted card form: short-lived, single-use, origin-bound grants to tokenize one card.
import { isVaultError, VaultError } from '../errors';
import { audited } from './audited';
import { mayHoldCardNumber } from './pan';
import { authorize, type Action, type Principal, type Role } from './policy';
import type { AuditTrail, Clock, RequestContext, TenantStore } from './ports';

export const DEFAULT_SESSION_TTL_SECONDS = 900;
export const MIN_SESSION_TTL_SECONDS = 60;
export const MAX_SESSION_TTL_SECONDS = 3600;
export const MAX_ALLOWED_ORIGINS = 10;
/** "https://" + a 253-character host + ":65535". */
export const MAX_ORIGIN_LENGTH = 267;

/** What a session token states; signed by the vault, so trusted once verified. Nothing in it is secret. */
export interface SessionClaims {
  id: string;
  tenantId: string;
  allowedOrigins: readonly string[];
  issuedAt: Date;
  expiresAt: Date;
}

export interface SessionTokenCodec {
  issue(claims: SessionClaims): Promise<string>;
  /** The claims of a genuine, unexpired token; otherwise session_expired (genuine but late) or session_invalid. */
  verify(token: string): Promise<SessionClaims>;
}

export interface ClientSessionRecord {
  id: string;
  tenantId: string;
  /** The API key id of the creator. */
  createdBy: string;
  allowedOrigins: string[];
  createdAt: Date;
  expiresAt: Date;
  usedAt: Date | null;
  token: string | null;
}

export interface ClientSessionStore {
  insert(session: Omit<ClientSessionRecord, 'usedAt' | 'token'>): Promise<ClientSessionRecord>;
  /** Marks the session used in one statement, if it is this tenant's, unused, unexpired and its creator's key is live. */
  consume(id: string, tenantId: string): Promise<ClientSessionRecord | undefined>;
  find(id: string): Promise<ClientSessionRecord | undefined>;
  /** The session, and whether the key that created it has been revoked (which consume refuses). */
  findWithCreator(id: string): Promise<(ClientSessionRecord & { creatorRevoked: boolean }) | undefined>;
  /** Records the card token once, on a used session; false if there was no such session or it has one. */
  recordToken(id: string, token: string): Promise<boolean>;
}

/**
 * What a redeemed session may do: tokenize, and nothing else — no read, so the form cannot even confirm
 * which cards the tenant holds. Built here, never loaded from policies/, so no policy file can widen it.
 * Its rate limit counts per session, which is single-use: the figure only bounds retries of that one request.
 */
export const CLIENT_SESSION_ROLE: Role = {
  name: 'client-session',
  description: 'A hosted card form: tokenize one card for one tenant.',
  actions: new Set<Action>(['tokenize']),
  detokenize: undefined,
  rateLimits: new Map<Action, number>([['tokenize', 5]]),
};

export interface CreatedSession {
  id: string;
  token: string;
  expiresAt: Date;
  allowedOrigins: string[];
}

export interface RedeemedSession {
  principal: Principal;
  sessionId: string;
}

export interface ClientSessionsDeps {
  sessions: ClientSessionStore;
  tokens: SessionTokenCodec;
  tenants: Pick<TenantStore, 'findTenantById'>;
  audit: AuditTrail;
  clock: Clock;
  /**
   * Whether a session may list http://localhost or http://127.0.0.1 (a merchant's development server): never in
   * production (config.ts), where such an origin would let whatever serves plain http on the shopper's own machine
   * frame the form and be told its token.
   */
  allowLocalHttpOrigins: boolean;
}

// A browser's serialization of an https origin (lowercase, no default port, no path), or a local http one.
const HOST_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HTTPS_ORIGIN = new RegExp(`^https://${HOST_LABEL}(?:\\.${HOST_LABEL})*(?::[0-9]{1,5})?$`);
const LOCAL_HTTP_ORIGIN = /^http:\/\/(?:localhost|127\.0\.0\.1)(?::[0-9]{1,5})?$/;
const HTTPS_ONLY = 'an origin is https://host[:port] as a browser sends it: lowercase, no default port, path, wildcard or trailing slash';
const LOCAL_HTTP_TOO = 'an origin is https://host[:port] (or http://localhost, http://127.0.0.1) as a browser sends it: lowercase, no default port, path, wildcard or trailing slash';

function checkOrigin(origin: unknown, index: number, allowLocalHttp: boolean): string {
  const pointer = `/allowed_origins/${index}`;
  const detail = allowLocalHttp ? LOCAL_HTTP_TOO : HTTPS_ONLY;
  const shaped = (o: string) => HTTPS_ORIGIN.test(o) || (allowLocalHttp && LOCAL_HTTP_ORIGIN.test(o));
  // Origins are written to the audit trail: one that could hold a card number is refused like a tenant name.
  if (typeof origin !== 'string' || origin.length > MAX_ORIGIN_LENGTH || !shaped(origin) || mayHoldCardNumber(origin)) {
    throw new VaultError('invalid_field', detail, { pointer });
  }
  // The URL parser has the last word: what it would not serialize back to the same string, a browser would not send.
  let serialized: string;
  try {
    serialized = new URL(origin).origin;
  } catch {
    serialized = '';
  }
  if (serialized !== origin) throw new VaultError('invalid_field', detail, { pointer });
  return origin;
}

function checkOrigins(origins: readonly unknown[], allowLocalHttp: boolean): string[] {
  if (origins.length < 1 || origins.length > MAX_ALLOWED_ORIGINS) {
    throw new VaultError('invalid_field', `allowed_origins holds 1 to ${MAX_ALLOWED_ORIGINS} origins`, { pointer: '/allowed_origins' });
  }
  const checked = origins.map((origin, index) => checkOrigin(origin, index, allowLocalHttp));
  const duplicate = checked.findIndex((origin, i) => checked.indexOf(origin) !== i);
  if (duplicate >= 0) throw new VaultError('invalid_field', 'an origin is listed twice', { pointer: `/allowed_origins/${duplicate}` });
  return checked;
}

function checkTtl(ttl: number): number {
  if (!Number.isInteger(ttl) || ttl < MIN_SESSION_TTL_SECONDS || ttl > MAX_SESSION_TTL_SECONDS) {
    throw new VaultError('invalid_field', `ttl_seconds is an integer from ${MIN_SESSION_TTL_SECONDS} to ${MAX_SESSION_TTL_SECONDS}`, {
      pointer: '/ttl_seconds',
    });
  }
  return ttl;
}

export class ClientSessions {
  constructor(private readonly deps: ClientSessionsDeps) {}

  async createSession(
    principal: Principal,
    ctx: RequestContext,
    request: { allowedOrigins: readonly unknown[]; ttlSeconds?: number },
  ): Promise<CreatedSession> {
    return audited(this.deps.audit, principal, ctx, 'client_session.create', null, async () => {
      // A session grants tokenize, so only a key that may tokenize can create one, and a session cannot beget another.
      if (principal.role === CLIENT_SESSION_ROLE) throw new VaultError('forbidden', 'a client session cannot create sessions');
      authorize(principal, 'tokenize');
      const allowedOrigins = checkOrigins(request.allowedOrigins, this.deps.allowLocalHttpOrigins);
      const ttlSeconds = checkTtl(request.ttlSeconds ?? DEFAULT_SESSION_TTL_SECONDS);
      // Whole seconds: the token's iat and exp are NumericDates, and the row must say exactly the same.
      const createdAt = new Date(Math.floor(this.deps.clock.now().getTime() / 1000) * 1000);
      const expiresAt = new Date(createdAt.getTime() + ttlSeconds * 1000);
      const id = globalThis.crypto.randomUUID();
      const tenantId = principal.tenant.id;
      // Signed before the row is written: a signing failure leaves no session behind.
      const token = await this.deps.tokens.issue({ id, tenantId, allowedOrigins, issuedAt: createdAt, expiresAt });
      await this.deps.sessions.insert({ id, tenantId, createdBy: principal.apiKeyId, allowedOrigins, createdAt, expiresAt });
      return {
        result: { id, token, expiresAt, allowedOrigins },
        details: { session_id: id, allowed_origins: allowedOrigins, ttl_seconds: ttlSeconds },
      };
    });
  }

  /**
   * Turns a session token into a principal that may tokenize once, for the tenant it names. `parentOrigin` is
   * the page the form says it is embedded in; it is checked before the session is consumed, so a request from
   * the wrong page does not use it up. The principal is returned only once its redemption is in the audit log.
   */
  async redeem(token: string | null, parentOrigin: string | null, ctx: RequestContext): Promise<RedeemedSession> {
    const seen: { claims?: SessionClaims } = {};
    let redeemed: RedeemedSession;
    try {
      redeemed = await this.redeemOnce(token, parentOrigin, seen);
    } catch (err) {
      const code = isVaultError(err) ? err.code : 'internal_error';
      await this.recordRedeem(seen.claims, code === 'session_origin_mismatch' ? 'denied' : 'failure', ctx, { code }).catch(() => undefined);
      throw err;
    }
    // The origin is recorded only now that it is known to be one the merchant listed, never as sent.
    await this.recordRedeem(seen.claims, 'success', ctx, { parent_origin: parentOrigin });
    return redeemed;
  }

  /** Called after the session's one tokenization, before the form is answered. */
  async recordToken(sessionId: string, token: string): Promise<void> {
    if (!(await this.deps.sessions.recordToken(sessionId, token))) {
      throw new VaultError('internal_error', 'the client session has no room for a token');
    }
  }

  private async redeemOnce(token: string | null, parentOrigin: string | null, seen: { claims?: SessionClaims }): Promise<RedeemedSession> {
    if (token === null) throw new VaultError('session_invalid');
    const claims = await this.deps.tokens.verify(token);
    seen.claims = claims;
    // The signed list equals the row's, which the runtime role cannot update: no need to read the row first.
    if (parentOrigin === null || !claims.allowedOrigins.includes(parentOrigin)) throw new VaultError('session_origin_mismatch');
    const tenant = await this.deps.tenants.findTenantById(claims.tenantId);
    if (!tenant) throw new VaultError('session_invalid');
    if (!(await this.deps.sessions.consume(claims.id, claims.tenantId))) throw await this.whyNotConsumed(claims);
    return { principal: { tenant, apiKeyId: `client-session:${claims.id}`, role: CLIENT_SESSION_ROLE }, sessionId: claims.id };
  }

  /** Only asked about a genuine token (its signature checked), so the answer tells a forger nothing. */
  private async whyNotConsumed(claims: SessionClaims): Promise<VaultError> {
    const row = await this.deps.sessions.find(claims.id);
    if (!row || row.tenantId !== claims.tenantId) return new VaultError('session_invalid');
    if (row.usedAt) return new VaultError('session_used');
    if (row.expiresAt.getTime() <= this.deps.clock.now().getTime()) return new VaultError('session_expired');
    // Unused and unexpired by our clock, yet not consumed: the creating key was revoked (or the clocks disagree).
    return new VaultError('session_invalid');
  }

  private recordRedeem(
    claims: SessionClaims | undefined,
    outcome: 'success' | 'failure' | 'denied',
    ctx: RequestContext,
    details: Record<string, unknown>,
  ): Promise<void> {
    return this.deps.audit.record({
      tenantId: claims?.tenantId ?? null,
      principal: claims ? `client-session:${claims.id}` : 'anonymous',
      action: 'client_session.redeem',
      outcome,
      source: ctx.source,
      requestId: ctx.requestId,
      details: claims ? { session_id: claims.id, ...details } : details,
    });
  }
}
