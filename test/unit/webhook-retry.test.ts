// The deliverer's retry schedule and failure codes, without a network.
import { randomFraction } from '../../src/crypto/random';
import { DEFAULT_DELIVERER_OPTIONS, failureCode, retryDelayMs } from '../../src/updater/webhooks/deliverer';

describe('retryDelayMs', () => {
  const options = DEFAULT_DELIVERER_OPTIONS;

  it('draws its jitter from the CSPRNG, uniformly in [0, 1)', () => {
    const draws = Array.from({ length: 10_000 }, randomFraction);
    expect(draws.every((d) => d >= 0 && d < 1)).toBe(true);
    expect(new Set(draws).size).toBeGreaterThan(9_990);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    expect(mean).toBeGreaterThan(0.47);
    expect(mean).toBeLessThan(0.53);
    const delays = draws.slice(0, 100).map((d) => retryDelayMs(1, options, () => d));
    expect(delays.every((ms) => ms >= 15_000 && ms < 30_000)).toBe(true);
  });

  it('doubles from 30 s, keeping half and drawing the other half at random', () => {
    expect([1, 2, 3].map((n) => retryDelayMs(n, options, () => 0))).toEqual([15_000, 30_000, 60_000]);
    expect([1, 2, 3].map((n) => retryDelayMs(n, options, () => 0.999_999))).toEqual([
      expect.closeTo(30_000, 0),
      expect.closeTo(60_000, 0),
      expect.closeTo(120_000, 0),
    ]);
  });

  it('never exceeds six hours, however many attempts failed', () => {
    for (const n of [10, 20, 100, 10_000]) expect(retryDelayMs(n, options, () => 0.999_999)).toBeLessThanOrEqual(6 * 3600 * 1000);
  });
});

describe('failureCode', () => {
  const fetchFailure = (code: string) => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('x'), { code }) });

  it.each([
    ['ECONNREFUSED', 'connection_refused'],
    ['ECONNRESET', 'connection_reset'],
    ['ENOTFOUND', 'dns_failure'],
    ['UND_ERR_CONNECT_TIMEOUT', 'timeout'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls_error'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls_error'],
    ['EWHATEVER', 'network_error'],
  ])('names %s as %s', (code, expected) => {
    expect(failureCode(fetchFailure(code))).toBe(expected);
  });

  it('names an AbortSignal.timeout as timeout', () => {
    expect(failureCode(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toBe('timeout');
  });
});
