// The KMS call deadline against the SDK's own limits, and key rotation's wait against the deadline.
import { AWS_KMS_ATTEMPTS, KMS_CALL_DEADLINE_MS, transientBackoffMs } from '../../src/crypto/kms-limits';
import { KEY_ROTATION_POLL_MS, KEY_ROTATION_SETTLE_MS } from '../../src/dependencies';

describe('KMS call limits', () => {
  it('fit every attempt, each to its request timeout, and the longest transient backoffs between them inside the call deadline', () => {
    const { maxAttempts, connectTimeoutMs, requestTimeoutMs } = AWS_KMS_ATTEMPTS;
    let worst = maxAttempts * requestTimeoutMs;
    for (let retry = 1; retry < maxAttempts; retry++) worst += transientBackoffMs(retry);
    expect(connectTimeoutMs).toBeLessThanOrEqual(requestTimeoutMs);
    expect(worst).toBeLessThan(KMS_CALL_DEADLINE_MS);
  });

  it('make keys rotate wait until every instance has polled twice and a call begun with the old key id has ended, and a second more', () => {
    expect(KEY_ROTATION_SETTLE_MS).toBeGreaterThanOrEqual(2 * KEY_ROTATION_POLL_MS + KMS_CALL_DEADLINE_MS + 1000);
  });
});
