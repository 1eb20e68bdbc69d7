// application/jose request bodies: a compact JWE of the JSON body, decrypted so the route validates the
// plaintext exactly as it would a JSON body. Acts on POST to the path it is mounted at, nothing else.
import express, { type RequestHandler } from 'express';
import type { ClientEncryptionKeys } from '../crypto/client-encryption';
import { VaultError } from '../errors';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Mount with `router.use(path, joseBodies(...))` before the JSON parser; it sets `res.locals.encryptedBody`. */
export function joseBodies(keys: Pick<ClientEncryptionKeys, 'decrypt'>, limitBytes: number): RequestHandler {
  const readText = express.text({ type: 'application/jose', limit: limitBytes });
  return (req, res, next) => {
    // Sub-paths of the mount (say /tokens/:token/detokenize) keep taking JSON only.
    if (req.method !== 'POST' || req.path !== '/' || !req.is('application/jose')) return next();
    readText(req, res, (err?: unknown) => {
      if (err) return next(err);
      plaintextBody(keys, req.body).then((body) => {
        req.body = body;
        res.locals.encryptedBody = true;
        next();
      }, next);
    });
  };
}

async function plaintextBody(keys: Pick<ClientEncryptionKeys, 'decrypt'>, text: unknown): Promise<unknown> {
  // A trailing newline from a file or a shell is not part of the JWE; anything else malformed is refused by decrypt.
  const plaintext = await keys.decrypt(typeof text === 'string' ? text.trim() : '');
  try {
    const body: unknown = JSON.parse(utf8.decode(plaintext));
    // As express.json({ strict: true }): an object or an array, never a bare value.
    if (body === null || typeof body !== 'object') throw new Error('not an object');
    return body;
  } catch {
    // No cause: a SyntaxError quotes the text it failed on, and this text holds a card number.
    throw new VaultError('malformed_json');
  } finally {
    plaintext.fill(0);
  }
}
