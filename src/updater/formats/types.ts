// The account-updater batch contract: what we ask a network about a card, what it answers, and the format port.

/** One card on file to check. `ref` is our opaque per-card reference and never carries card data. */
export interface Inquiry {
  ref: string;
  pan: string;
  expMonth: number;
  expYear: number;
  merchantId: string;
}

export type UpdateOutcome =
  | 'new_account'
  | 'new_expiry'
  | 'closed'
  | 'contact_cardholder'
  | 'no_change'
  | 'no_match'
  | 'non_participating'
  | 'opted_out'
  | 'unknown';

/** One answered inquiry; `networkCode` keeps the raw code so the audit trail shows what the network said. */
export interface NetworkResponse {
  ref: string;
  outcome: UpdateOutcome;
  newPan?: string;
  newExpMonth?: number;
  newExpYear?: number;
  networkCode: string;
}

/** A closed set, so the run report can group problems without parsing messages. */
export type ParseErrorCode =
  | 'empty_file'
  | 'missing_header'
  | 'invalid_header'
  | 'misplaced_header'
  | 'missing_trailer'
  | 'invalid_trailer'
  | 'count_mismatch'
  | 'record_after_trailer'
  | 'blank_line'
  | 'unknown_record_type'
  | 'malformed_record'
  | 'invalid_reference'
  | 'duplicate_reference'
  | 'unknown_response_code'
  | 'invalid_card_number'
  | 'invalid_merchant_id'
  | 'invalid_expiry'
  | 'unexpected_field';

/**
 * `line` is 1-based; 0 means the whole file (a missing trailer has no line to point at).
 * `message` names fields and rules, never a value read from the file, so it is safe to log and to show.
 */
export interface ParseError {
  line: number;
  code: ParseErrorCode;
  message: string;
}

/**
 * What a response file yielded. Bad records are reported and skipped; the good ones are still returned,
 * except when the header is missing or unusable, because then nothing proves which batch the file answers.
 */
export interface ParseReport {
  batchId?: string;
  responses: NetworkResponse[];
  errors: ParseError[];
}

/** What an inquiry file yielded, on the network's side; the same rules as ParseReport. */
export interface InquiryReport {
  batchId?: string;
  inquiries: Inquiry[];
  errors: ParseError[];
}

/** Both ends of the exchange: the vault writes inquiries and reads responses, a network (or its simulator) the reverse. */
export interface BatchFormat {
  name: 'vau' | 'abu';
  /** Throws VaultError on an inquiry the format cannot carry; `createdAt` only stamps the header. */
  writeInquiry(batchId: string, inquiries: readonly Inquiry[], createdAt?: Date): string;
  /** Never throws on file content: every problem lands in the report. */
  parseResponse(text: string): ParseReport;
  /** The network reading our inquiry file. Never throws on file content: every problem lands in the report. */
  parseInquiry(text: string): InquiryReport;
  /**
   * The network writing its response file. Throws VaultError on a response the format cannot carry, so it never
   * writes a file parseResponse would reject; `createdAt` only stamps the header.
   */
  writeResponse(batchId: string, responses: readonly NetworkResponse[], createdAt?: Date): string;
}
