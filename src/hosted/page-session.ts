// Checks a client session for serving the hosted form: genuine, unexpired, unused, its creator's key live, and from a listed origin — without consuming it.
import { VaultError } from '../errors';
import type { ClientSessionStore, SessionTokenCodec } from '../domain/client-sessions';
import type { Clock } from '../domain/ports';

export interface PageSession {
  /** The origin the form will talk to: one the merchant listed, as the page was asked for. */
  parentOrigin: string;
  /** Every origin the session names: the page's frame-ancestors. */
  allowedOrigins: readonly string[];
}

export interface PageSessionsDeps {
  tokens: Pick<SessionTokenCodec, 'verify'>;
  sessions: Pick<ClientSessionStore, 'findWithCreator'>;
  clock: Clock;
}

export class PageSessions {
  constructor(private readonly deps: PageSessionsDeps) {}

  /**
   * Serving the page only reads the session: POST /hosted/tokens is its one use. A used session gets no form,
   * so a leaked iframe URL cannot show a form that could never submit.
   */
  async check(token: unknown, parentOrigin: unknown): Promise<PageSession> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 8192) throw new VaultError('session_invalid');
    const claims = await this.deps.tokens.verify(token);
    if (typeof parentOrigin !== 'string' || !claims.allowedOrigins.includes(parentOrigin)) {
      throw new VaultError('session_origin_mismatch');
    }
    const row = await this.deps.sessions.findWithCreator(claims.id);
    if (!row || row.tenantId !== claims.tenantId) throw new VaultError('session_invalid');
    if (row.usedAt) throw new VaultError('session_used');
    if (row.expiresAt.getTime() <= this.deps.clock.now().getTime()) throw new VaultError('session_expired');
    // consume refuses a session whose creating key was revoked, so such a session gets no form either.
    if (row.creatorRevoked) throw new VaultError('session_invalid');
    return { parentOrigin, allowedOrigins: claims.allowedOrigins };
  }
}
