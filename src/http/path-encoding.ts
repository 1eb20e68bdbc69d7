// Paths that are not percent-encoded UTF-8: kept routable, so the route's role check answers them before anything else.
import type { RequestHandler, Response } from 'express';
import { VaultError } from '../errors';

/**
 * Express decodes a route's path parameters while it matches the route, before the route's first handler (its
 * role check, authorize.ts) runs, and answers a segment that does not decode (`/v1/tokens/%E0%A4%A`) with 400
 * on the spot: a key whose role lacks the route's action learnt the path's validity instead of getting the 403,
 * audited as `auth.denied`, that its every other request on that route gets. Mounted ahead of the routes, this
 * escapes each `%` of such a segment, so the route matches with the segment's raw text as its parameter, and
 * marks the request; allowOnly refuses a marked request with `undecodablePath` once the action is granted. The
 * raw text holds a `%`, so it is never taken for a token (tokenOrUndefined): no lookup, no audit record of it.
 */
export const keepUndecodablePaths: RequestHandler = (req, res, next) => {
  const url = req.url;
  const queryAt = url.indexOf('?');
  const path = queryAt < 0 ? url : url.slice(0, queryAt);
  // Nearly every request: nothing to decode, nothing to do.
  if (!path.includes('%')) return next();
  let undecodable = false;
  const kept = path
    .split('/')
    .map((segment) => {
      if (!segment.includes('%') || decodes(segment)) return segment;
      undecodable = true;
      return segment.replaceAll('%', '%25');
    })
    .join('/');
  if (undecodable) {
    req.url = kept + url.slice(path.length);
    res.locals.undecodablePath = true;
  }
  next();
};

function decodes(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}

/** The refusal of a marked request (see keepUndecodablePaths), once its role is known to allow the route; else undefined. */
export function undecodablePath(res: Response): VaultError | undefined {
  if (res.locals.undecodablePath !== true) return undefined;
  return new VaultError('invalid_request', 'the path is not percent-encoded UTF-8');
}
