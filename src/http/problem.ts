// The one error-to-HTTP mapper: RFC 9457 problem+json with a stable code; unknown errors become a logged, generic 500.
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { VaultError, type ErrorCode } from '../errors';
import type { Logger } from '../log';

/** body-parser signals its failures by `type`; none of its messages may be echoed (they can quote the body). */
const BODY_PARSER_CODES: Record<string, ErrorCode> = {
  'entity.parse.failed': 'malformed_json',
  'entity.too.large': 'payload_too_large',
  'charset.unsupported': 'unsupported_media_type',
  'encoding.unsupported': 'unsupported_media_type',
  'entity.verify.failed': 'invalid_request',
  'request.aborted': 'invalid_request',
  'request.size.invalid': 'invalid_request',
  'stream.encoding.set': 'internal_error',
};

export function toVaultError(err: unknown): VaultError | undefined {
  if (err instanceof VaultError) return err;
  const type = (err as { type?: unknown })?.type;
  if (typeof type === 'string' && BODY_PARSER_CODES[type]) return new VaultError(BODY_PARSER_CODES[type]);
  // Other client errors raised by Express and its parsers (an undecodable body or path) keep their 4xx.
  const status = (err as { status?: unknown })?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new VaultError(status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : 'invalid_request');
  }
  return undefined;
}

/** The RFC 9457 document for an error: its catalogued type, title, status and code, and the value-free detail. */
export function problemBody(error: VaultError, requestId?: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    type: `urn:cardvault:problem:${error.code}`,
    title: error.title,
    status: error.status,
    code: error.code,
  };
  if (error.detail) body.detail = error.detail;
  if (error.pointer) body.pointer = error.pointer;
  if (requestId) body.request_id = requestId;
  return body;
}

/**
 * Emitted on the response as a 401 is sent, also to a client that has already hung up, for which 'finish' never
 * comes: the failed-authentication limit (rate-limit.ts) counts it, since its key was looked up and audited all the same.
 */
export const UNAUTHENTICATED = 'cardvault:unauthenticated';

/** The challenge RFC 9110 §15.5.2 requires of every 401: these problem documents' and the hosted form page's. */
export const CHALLENGE = 'Bearer realm="cardvault"';

export function sendProblem(res: Response, error: VaultError): void {
  const body = problemBody(error, res.locals.requestId as string | undefined);
  if (error.status === 401) {
    res.setHeader('WWW-Authenticate', CHALLENGE);
    res.emit(UNAUTHENTICATED);
  }
  if (error.retryable) res.setHeader('Retry-After', '1');
  res.status(error.status).type('application/problem+json').send(JSON.stringify(body));
}

export function problemHandler(log: Logger): ErrorRequestHandler {
  // Four parameters, though `next` is never called: Express knows an error handler by its arity.
  return (err, _req, res, _next) => {
    if (res.headersSent) {
      // The answer has begun and cannot be completed: cut it short, so the client sees a broken answer rather than a
      // whole one. Not next(err): Express's default handler would print the whole error (a driver's detail can
      // quote a row) to stderr, past the logger's serializer and scrubber.
      log.error({ err, request_id: res.locals.requestId, code: toVaultError(err)?.code ?? 'internal_error' }, 'request failed after its answer had begun');
      res.destroy();
      return;
    }
    const known = toVaultError(err);
    if (!known || known.status >= 500) {
      log.error({ err, request_id: res.locals.requestId, code: known?.code ?? 'internal_error' }, 'request failed');
    }
    sendProblem(res, known ?? new VaultError('internal_error'));
  };
}

/** The catch-all behind a route's handlers: the path exists, the method does not. */
/**
 * 405 with `Allow: <allowed>`. Express answers HEAD wherever there is a GET (RFC 9110 asks that of every server), so
 * GET brings HEAD into the list even where the route names only GET.
 */
export function methodNotAllowed(allowed: string): RequestHandler {
  const methods = allowed.split(', ');
  const get = methods.indexOf('GET');
  if (get >= 0 && !methods.includes('HEAD')) methods.splice(get + 1, 0, 'HEAD');
  const header = methods.join(', ');
  return (_req, res) => {
    res.setHeader('Allow', header);
    sendProblem(res, new VaultError('method_not_allowed'));
  };
}
