// POST /v1/client-sessions for merchant backends, and the `ClientSession` credential the hosted form presents.
import { Router, type RequestHandler, type Response } from 'express';
import { sessionBinding, type JweBinding } from '../crypto/client-encryption';
import { MAX_ALLOWED_ORIGINS, MAX_ORIGIN_LENGTH, type ClientSessions } from '../domain/client-sessions';
import { contextOf, principalOf } from './authenticate';
import type { Allow } from './authorize';
import { methodNotAllowed } from './problem';
import { validator } from './validate';

/** Shape only; client-sessions.ts judges the values, so each bad origin is named by its own pointer. */
export const CLIENT_SESSION_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['allowed_origins'],
  properties: {
    allowed_origins: { type: 'array', minItems: 1, maxItems: MAX_ALLOWED_ORIGINS, items: { type: 'string', maxLength: MAX_ORIGIN_LENGTH } },
    ttl_seconds: { type: 'integer' },
  },
} as const;

interface ClientSessionBody {
  allowed_origins: string[];
  ttl_seconds?: number;
}

const parseRequest = validator<ClientSessionBody>(CLIENT_SESSION_REQUEST);
const CLIENT_SESSION = /^ClientSession ([A-Za-z0-9_.-]{1,8192})$/;
/** Long enough for any origin we accept; a longer header cannot match and is not worth reading. */
const PARENT_ORIGIN_MAX = 300;

/** Counts against the creating key's tokenize budget (in `allow`): a session is a deferred tokenization. */
export function clientSessionRoutes(sessions: ClientSessions, allow: Allow): Router {
  const router = Router();

  router.post('/', allow('tokenize', 'client_session.create'), async (req, res) => {
    const body = parseRequest(req.body);
    const created = await sessions.createSession(principalOf(res), contextOf(req, res), {
      allowedOrigins: body.allowed_origins,
      ttlSeconds: body.ttl_seconds,
    });
    res.status(201).json({ session: created.token, expires_at: created.expiresAt.toISOString(), allowed_origins: created.allowedOrigins });
  });

  router.all('/', methodNotAllowed('POST'));
  return router;
}

/**
 * `Authorization: ClientSession <token>` → a principal that may tokenize once, on res.locals as `authenticate`
 * leaves one. The form sends the page it is embedded in as X-Parent-Origin. Each call consumes the session,
 * so mount it on the one route a session is for, never with router.use over other routes.
 */
export function clientSessionAuth(sessions: ClientSessions): RequestHandler {
  return async (req, res, next) => {
    const match = CLIENT_SESSION.exec(req.headers.authorization ?? '');
    const parent = req.get('X-Parent-Origin');
    const redeemed = await sessions.redeem(
      match ? match[1]! : null,
      parent !== undefined && parent.length <= PARENT_ORIGIN_MAX ? parent : null,
      contextOf(req, res),
    );
    res.locals.principal = redeemed.principal;
    res.locals.clientSessionId = redeemed.sessionId;
    // What a JWE body must be bound to (jose-body.ts): the digest of the token it was redeemed with, not the token.
    res.locals.clientSessionBinding = match ? sessionBinding(match[1]!) : undefined;
    next();
  };
}

export function clientSessionOf(res: Response): string | undefined {
  return res.locals.clientSessionId as string | undefined;
}

/** The JWE binding of the session this request redeemed; undefined when it came with none. */
export function clientSessionBindingOf(res: Response): JweBinding | undefined {
  return res.locals.clientSessionBinding as JweBinding | undefined;
}

/**
 * For the tokenize handler to call, explicitly, after the card is vaulted and before it answers: the session
 * records the token it produced. A request that came with an API key has no session and records nothing.
 */
export function recordSessionToken(sessions: ClientSessions): (res: Response, card: { token: string }) => Promise<void> {
  return async (res, card) => {
    const sessionId = clientSessionOf(res);
    if (sessionId === undefined) return;
    await sessions.recordToken(sessionId, card.token);
  };
}

