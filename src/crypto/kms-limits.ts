// How long one KMS call may take, retries included: the AWS adapter enforces it, and key rotation waits it out.

/**
 * The AWS SDK's own limits on one call: attempts in its standard retry mode, which backs off between them, and each
 * attempt's. The request timeout runs from before the connection is made, so it bounds the whole attempt.
 */
export const AWS_KMS_ATTEMPTS = { maxAttempts: 3, connectTimeoutMs: 1000, requestTimeoutMs: 2000 } as const;

/**
 * The SDK's longest backoff before retry number `retry` (1, 2, …) after a transient failure (a timeout, a 5xx):
 * a random share of 50 ms × 2^(retry − 1) in @smithy/core's standard mode. Throttling backs off from 1 s instead,
 * and a Retry-After answer stretches it by up to 5 s more: those the deadline cuts short.
 */
export const transientBackoffMs = (retry: number): number => 50 * 2 ** (retry - 1);

/**
 * The longest one KMS call may take, from the adapter's send to its answer or failure, whatever the SDK does in
 * between (attempts, backoffs, a credential refresh, a response body read after its headers, which the request
 * timeout no longer covers): past it the request is aborted, the call fails as kms_unavailable, and an answer that
 * still arrives is wiped unread. Every attempt running to its request timeout, with the transient backoffs between,
 * fits inside it (test/unit/kms-limits.test.ts).
 */
export const KMS_CALL_DEADLINE_MS = 7000;
