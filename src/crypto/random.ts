// Token randomness from the OS CSPRNG: unbiased decimal digits and opaque ids; request and trace ids.
import { randomBytes, randomFillSync, randomInt } from 'node:crypto';
import { VaultError } from '../errors';
import type { TokenRandomness } from '../domain/token';

/** The largest multiple of 10 that fits in a byte: keeping only bytes below it makes `byte % 10` uniform. */
const UNBIASED_LIMIT = 250;

const ASCII_ZERO = 48;

function digits(count: number): string {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new VaultError('internal_error', 'the digit count must be a non-negative integer');
  }
  const out = Buffer.alloc(count);
  let filled = 0;
  while (filled < count) {
    const needed = count - filled;
    // 6 bytes in 256 are rejected (~2.3%); a ~6% margin plus 4 makes a second call rare at any count.
    const bytes = randomBytes(needed + (needed >> 4) + 4);
    for (let i = 0; i < bytes.length && filled < count; i++) {
      const byte = bytes[i];
      if (byte < UNBIASED_LIMIT) out[filled++] = ASCII_ZERO + (byte % 10);
    }
  }
  return out.toString('latin1');
}

function opaqueId(): string {
  return randomBytes(16).toString('base64url');
}

export const cryptoTokenRandomness: TokenRandomness = Object.freeze({ digits, opaqueId });

/** randomInt takes a range below 2^48; 2^47 steps still give 47 bits of resolution. */
const FRACTION_STEPS = 2 ** 47;

/** A uniform number in [0, 1) from the CSPRNG: the one source of randomness in src/, jitter included. */
export function randomFraction(): number {
  return randomInt(FRACTION_STEPS) / FRACTION_STEPS;
}

/**
 * Ids for requests and spans: drawn from CSPRNG output fetched 4 KiB at a time, as Node does for randomUUID,
 * so a request costs no call into OpenSSL for its ids. Each byte is handed out once. Not for keys, IVs or tokens.
 */
const ID_POOL = Buffer.alloc(4096);
let idPoolUsed = ID_POOL.length;

function idBytes(count: number): Buffer {
  if (idPoolUsed + count > ID_POOL.length) {
    randomFillSync(ID_POOL);
    idPoolUsed = 0;
  }
  const bytes = ID_POOL.subarray(idPoolUsed, idPoolUsed + count);
  idPoolUsed += count;
  return bytes;
}

/** `bytes` random bytes as lowercase hex. */
export function randomHexId(bytes: number): string {
  return idBytes(bytes).toString('hex');
}

const LETTERS = 'abcdefghijklmnop';

/** `bytes` random bytes spelled with the letters a–p, one per 4 bits: no digit, so never mistaken for a card. */
export function randomLetterId(bytes: number): string {
  const raw = idBytes(bytes);
  let out = '';
  for (const byte of raw) out += LETTERS[byte >> 4]! + LETTERS[byte & 15]!;
  return out;
}
