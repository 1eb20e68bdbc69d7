// JSON request bodies: read only for POST, PUT and PATCH, refused unless application/json, limited in size.
import express, { type RequestHandler } from 'express';
import { VaultError } from '../errors';

/**
 * POST, PUT and PATCH bodies must be JSON and are parsed; other methods' bodies are never read. A request with no
 * body at all (an action such as POST /v1/tokens/{token}/refresh) passes with `req.body` undefined.
 */
export function jsonBodies(limit: number): RequestHandler {
  const parse = express.json({ limit, strict: true, type: 'application/json' });
  return (req, res, next) => {
    if (req.method !== 'POST' && req.method !== 'PUT' && req.method !== 'PATCH') return next();
    if (req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] ?? '0') === '0') return next();
    // joseBodies already decrypted and parsed it.
    if (res.locals.encryptedBody) return next();
    if (!req.is('application/json')) throw new VaultError('unsupported_media_type');
    // UTF-8 only (RFC 8259 §8.1): UTF-7 and the like would let a body spell digits that a filter in front never saw.
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') throw new VaultError('unsupported_media_type', 'the body must be UTF-8');
    parse(req, res, next);
  };
}
