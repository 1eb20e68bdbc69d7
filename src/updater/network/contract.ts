// What the network side needs from a batch format; the inquiry and response types are the formats' own.
import type { BatchFormat, Inquiry, NetworkResponse, UpdateOutcome } from '../formats/types';

export type { Inquiry, NetworkResponse };
export type Outcome = UpdateOutcome;

export const OUTCOMES: readonly Outcome[] = [
  'new_account',
  'new_expiry',
  'closed',
  'contact_cardholder',
  'no_change',
  'no_match',
  'non_participating',
  'opted_out',
  'unknown',
];

/** What answerDrop needs from a batch format, the network's half of it: read the request file, write the response file. */
export type DropFormat = Pick<BatchFormat, 'parseInquiry' | 'writeResponse'>;
