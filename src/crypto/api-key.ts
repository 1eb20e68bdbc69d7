// API key secrets: 256 random bits, shown once, stored only as a SHA-256 hash (high entropy needs no slow hash).
import { createHash, randomBytes } from 'node:crypto';

const PREFIX = 'cvk_';

export function generateApiKey(): { secret: string; hash: Buffer } {
  const secret = `${PREFIX}${randomBytes(32).toString('base64url')}`;
  return { secret, hash: hashApiKey(secret) };
}

export function hashApiKey(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Cheap shape check before any hashing or lookup. */
export function looksLikeApiKey(value: string): boolean {
  return /^cvk_[A-Za-z0-9_-]{43}$/.test(value);
}

export const apiKeyCodec = { generate: generateApiKey, hash: hashApiKey, looksValid: looksLikeApiKey };
