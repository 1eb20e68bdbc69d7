// application/jose request bodies: a compact JWE of the JSON body, bound to the caller's tenant or client session,
// decrypted so the route validates the plaintext exactly as it would a JSON body. Acts on POST to its mount only.
import express, { type RequestHandler, type Response } from 'express';
import { tenantBinding, type ClientEncryptionKeys, type JweBinding } from '../crypto/client-encryption';
import type { Principal } from '../domain/policy';
import { VaultError } from '../errors';
import { principalOf } from './authenticate';
import { clientSessionBindingOf } from './client-session-routes';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Whom the route's JWE must name: `tenant`, the API key's tenant (mount after `authenticate`); `session`, the
 * client session presented (mount after `clientSessionAuth`, which has checked and spent it).
 */
export type JoseBinding = 'tenant' | 'session';

/** Undefined without a principal or a redeemed session: a mount in the wrong place refuses every body. */
function bindingOf(kind: JoseBinding, res: Response): JweBinding | undefined {
  if (kind === 'session') return clientSessionBindingOf(res);
  const principal = principalOf(res) as Principal | undefined;
  return principal && tenantBinding(principal.tenant.name);
}

/** Mount with `router.use(path, joseBodies(...))` before the JSON parser; it sets `res.locals.encryptedBody`. */
export function joseBodies(keys: Pick<ClientEncryptionKeys, 'decrypt'>, limitBytes: number, binding: JoseBinding): RequestHandler {
  const readText = express.text({ type: 'application/jose', limit: limitBytes });
  return (req, res, next) => {
    // Sub-paths of the mount (say /tokens/:token/detokenize) keep taking JSON only.
    if (req.method !== 'POST' || req.path !== '/' || !req.is('application/jose')) return next();
    readText(req, res, (err?: unknown) => {
      if (err) return next(err);
      const bound = bindingOf(binding, res);
      if (!bound) return next(new VaultError('invalid_jwe'));
      plaintextBody(keys, req.body, bound).then((body) => {
        req.body = body;
        res.locals.encryptedBody = true;
        next();
      }, next);
    });
  };
}

async function plaintextBody(keys: Pick<ClientEncryptionKeys, 'decrypt'>, text: unknown, binding: JweBinding): Promise<unknown> {
  // A trailing newline from a file or a shell is not part of the JWE; anything else malformed is refused by decrypt.
  const plaintext = await keys.decrypt(typeof text === 'string' ? text.trim() : '', binding);
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
