// Token randomness from the OS CSPRNG: unbiased decimal digits and opaque ids.
import { randomBytes, randomInt } from 'node:crypto';
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
