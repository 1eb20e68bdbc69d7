// Fingerprint generations: which keys an instance writes and looks up with while a tenant's key is replaced.
//
// A card's fingerprint of generation g lives in the column of g's parity (odd: `fingerprint`, even:
// `fingerprint_even`), each with its own unique index per tenant. A rotation g → g+1 moves through states that
// every instance re-reads within a few seconds, and the command waits past that after each change, so two
// instances are never more than one step apart; each pair of adjacent steps shares a unique index they both
// write and look up by, which is what keeps one token per number per tenant throughout (README, "Keys").

export type Parity = 'odd' | 'even';

export const parityOf = (generation: number): Parity => (generation % 2 === 1 ? 'odd' : 'even');

/** A card's fingerprints, by column; null where the card has none of that parity's generation. */
export interface Fingerprints {
  odd: string | null;
  even: string | null;
}

export type FingerprintKeyState = 'next' | 'current' | 'previous' | 'retiring' | 'retired';

/** How an instance uses a tenant's fingerprint keys, derived from their states (see viewOf). */
export interface FingerprintView {
  /** Looked up by, presented in responses, and keys new idempotency digests. */
  current: number;
  /** Every generation written when a card gets a number: the current one, and next or previous in an overlap. */
  write: number[];
}

/**
 * steady: current only. prepare: + next (written, not looked up). switch: + previous (written, so instances still
 * looking up by it find new cards). retire: + retiring (no longer written or read; its key is kept until every
 * instance has left switch, then its column is cleared and the key destroyed).
 */
export function viewOf(keys: Array<{ generation: number; state: FingerprintKeyState }>): FingerprintView {
  const current = keys.find((k) => k.state === 'current');
  if (!current) throw new Error('a tenant has no current fingerprint key');
  const overlap = keys.find((k) => k.state === 'next' || k.state === 'previous');
  return { current: current.generation, write: overlap ? [current.generation, overlap.generation].sort((a, b) => a - b) : [current.generation] };
}

/** A number's fingerprints as one instance writes them, and the one it looks the number up by. */
export interface CardFingerprint {
  columns: Fingerprints;
  lookup: { parity: Parity; value: string };
}

/** The fingerprint a response shows: the current generation's (it changes when the key is rotated). */
export function presentedFingerprint(fingerprints: Fingerprints, current: Parity): string {
  const other = current === 'odd' ? fingerprints.even : fingerprints.odd;
  return fingerprints[current] ?? other ?? '';
}
