// The one error type: a stable code, a public title and status from one table, and a detail that never holds input values.

const CATALOGUE = {
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  invalid_jwe: { status: 400, title: 'The request body is not a JWE this vault can decrypt' },
  invalid_request: { status: 400, title: 'The request is not valid' },
  missing_field: { status: 400, title: 'A required field is missing' },
  unknown_field: { status: 400, title: 'The request has a field this endpoint does not accept' },
  invalid_type: { status: 400, title: 'A field has the wrong type' },
  invalid_field: { status: 400, title: 'A field has a value out of range' },
  invalid_card_number: { status: 400, title: 'The card number is not valid' },
  invalid_expiry: { status: 400, title: 'The expiry date is not valid' },
  invalid_cvc: { status: 400, title: 'The card verification code is not valid' },
  card_expired: { status: 400, title: 'The card has expired' },
  unsupported_format: { status: 400, title: 'The token format is not supported' },
  invalid_idempotency_key: { status: 400, title: 'The Idempotency-Key header is not valid' },
  unauthenticated: { status: 401, title: 'A valid API key is required' },
  forbidden: { status: 403, title: 'This API key may not perform this action' },
  purpose_not_allowed: { status: 403, title: 'This API key may not detokenize for this purpose' },
  session_invalid: { status: 401, title: 'A valid client session is required' },
  session_expired: { status: 401, title: 'The client session has expired' },
  session_used: { status: 401, title: 'The client session has already been used' },
  session_origin_mismatch: { status: 403, title: 'The client session does not allow this parent origin' },
  token_not_found: { status: 404, title: 'No such token' },
  card_closed: { status: 409, title: 'The card account is closed; the issuer reported it through the account updater' },
  card_not_enrolled: { status: 409, title: 'The card is not enrolled in the account updater' },
  updater_not_configured: { status: 409, title: 'The account updater is not set up for this tenant' },
  network_not_supported: { status: 409, title: 'The account updater does not cover this card network' },
  not_found: { status: 404, title: 'No such resource' },
  method_not_allowed: { status: 405, title: 'Method not allowed on this resource' },
  tenant_exists: { status: 409, title: 'A tenant with this name already exists' },
  idempotency_key_reused: { status: 422, title: 'The Idempotency-Key was already used with a different request' },
  card_deleted: { status: 409, title: 'The card this Idempotency-Key vaulted has since been deleted' },
  request_timeout: { status: 408, title: 'The request was not received in time' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: "The request body's media type is not accepted here" },
  rate_limited: { status: 429, title: 'Too many requests; retry after the time in Retry-After' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  token_space_exhausted: { status: 503, title: 'No free token could be generated; retry later' },
  card_busy: { status: 503, title: 'The card kept changing while it was being updated; retry' },
  database_unavailable: { status: 503, title: 'The database is unavailable; retry later' },
  audit_unavailable: { status: 503, title: 'The audit log is unavailable; nothing was revealed; retry later' },
  network_unavailable: { status: 503, title: 'The card network did not answer; retry later' },
  kms_unavailable: { status: 503, title: 'The key management service is unavailable; retry later' },
  internal_error: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof CATALOGUE;

export class VaultError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  /** Public, value-free explanation (field names and limits only). */
  readonly detail: string | undefined;
  /** A JSON pointer naming the offending field, never its value. */
  readonly pointer: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { pointer?: string; cause?: unknown }) {
    super(detail ? `${code}: ${detail}` : code, options?.cause ? { cause: options.cause } : undefined);
    this.name = 'VaultError';
    this.code = code;
    this.status = CATALOGUE[code].status;
    this.title = CATALOGUE[code].title;
    this.detail = detail;
    this.pointer = options?.pointer;
  }

  get retryable(): boolean {
    return this.status === 503;
  }
}

export function isVaultError(err: unknown, code?: ErrorCode): err is VaultError {
  return err instanceof VaultError && (code === undefined || err.code === code);
}

export function describeError(code: ErrorCode): { status: number; title: string } {
  return CATALOGUE[code];
}

export const ERROR_CODES = Object.keys(CATALOGUE) as ErrorCode[];

/**
 * A refusal to start whose message the vault wrote and which quotes nothing from outside but settings, file paths
 * and migration names (pending migrations, an unusable key file): the one kind of startup failure, beside
 * ConfigError and PolicyError, whose message main logs, since it is what the operator must read to fix it.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
