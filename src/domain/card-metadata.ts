// What the vault says about a card on file: its metadata, the same in a response and in an idempotent replay.
import { presentedFingerprint, type Parity } from './fingerprints';
import type { Pan } from './pan';
import type { CardRecord } from './ports';
import type { Secret } from './secret';
import type { TokenFormat } from './token';

export interface CardInput {
  pan: Pan;
  expMonth: number;
  expYear: number;
  holderName: string | null;
  cvc: Secret<string> | null;
}

/** Everything about a card on file except its secrets; JSON-safe so idempotent replays return it unchanged. */
export interface CardMetadata {
  token: string;
  format: TokenFormat;
  /** The current fingerprint-key generation's: it changes when the tenant's fingerprint key is rotated. */
  fingerprint: string;
  status: 'active' | 'closed';
  brand: string;
  bin: string;
  last4: string;
  expMonth: number;
  expYear: number;
  createdAt: string;
  updatedAt: string;
  version: number;
  contactCardholder: boolean;
  accountUpdater: { enrolled: boolean; enrolledAt: string | null; consentRef: string | null; lastInquiredAt: string | null };
  /** When this token was merged into another card (README, "Account updater"): the token it resolves to. */
  mergedInto?: string;
  /** Whether a CVC is held for this card right now; read live, never stored. */
  cvcHeld?: boolean;
}

export interface TokenizeOutcome {
  created: boolean;
  card: CardMetadata;
}

const iso = (date: Date | null) => (date ? date.toISOString() : null);

/**
 * `card` is the card itself, or the survivor a merged token resolves to; `token` stays the one asked for.
 * `current` is the parity of the tenant's current fingerprint generation (CardCrypto.fingerprintView).
 */
export function toMetadata(card: CardRecord, current: Parity, token = card.token): CardMetadata {
  const metadata: CardMetadata = {
    token,
    format: card.format,
    fingerprint: presentedFingerprint(card.fingerprints, current),
    status: card.status === 'closed' ? 'closed' : 'active',
    brand: card.brand,
    bin: card.bin,
    last4: card.last4,
    expMonth: card.expMonth,
    expYear: card.expYear,
    createdAt: card.createdAt.toISOString(),
    updatedAt: card.updatedAt.toISOString(),
    version: card.version,
    contactCardholder: card.contactCardholder,
    accountUpdater: {
      enrolled: card.updater.enrolledAt !== null,
      enrolledAt: iso(card.updater.enrolledAt),
      consentRef: card.updater.consentRef,
      lastInquiredAt: iso(card.updater.lastInquiredAt),
    },
  };
  if (token !== card.token) metadata.mergedInto = card.token;
  return metadata;
}
