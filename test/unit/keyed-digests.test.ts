// The stored formats of fingerprints, request digests and Idempotency-Key digests: rows written by one release
// are matched by the next, so the HMAC input each one is made from must never change by accident.
import { createHmac, randomBytes } from 'node:crypto';
import { createCardCrypto, hmacFingerprint } from '../../src/crypto/card-crypto';
import type { Keyring } from '../../src/crypto/keyring';
import { Pan } from '../../src/domain/pan';
import type { Tenant } from '../../src/domain/ports';

const TENANT: Tenant = { id: 'tenant-1', name: 'acme', createdAt: new Date(0) };
const keys = new Map([[1, randomBytes(32)], [2, randomBytes(32)]]);
const hmac = (generation: number, input: string) => createHmac('sha256', keys.get(generation)!).update(input).digest('base64url');

/** Generation 1 current, generation 2 written beside it (a rotation's prepare step). */
const keyring = {
  fingerprintView: async () => ({ current: 1, write: [1, 2] }),
  fingerprintKey: async (_tenantId: string, generation: number) => ({ key: keys.get(generation)!, release: () => undefined }),
} as unknown as Keyring;
const crypto = createCardCrypto(keyring);

it('fingerprints a number as fp_ + HMAC of its label and digits', () => {
  expect(hmacFingerprint(keys.get(1)!, Pan.parse('4111111111111111'))).toBe(`fp_${hmac(1, 'cardvault/fingerprint/v1\u00004111111111111111')}`);
});

it('digests a request under the current generation, or the one asked for', async () => {
  expect(await crypto.requestDigest(TENANT, '["x"]')).toEqual({ generation: 1, digest: hmac(1, 'cardvault/idempotency/v1\u0000["x"]') });
  expect(await crypto.requestDigest(TENANT, '["x"]', 2)).toEqual({ generation: 2, digest: hmac(2, 'cardvault/idempotency/v1\u0000["x"]') });
});

it('digests an Idempotency-Key under every generation written, by parity, or under those asked for', async () => {
  const odd = hmac(1, 'cardvault/idempotency-key/v1\u0000order-1');
  const even = hmac(2, 'cardvault/idempotency-key/v1\u0000order-1');
  expect(await crypto.idempotencyKeyDigests(TENANT.id, 'order-1')).toEqual({ odd, even });
  expect(await crypto.idempotencyKeyDigests(TENANT.id, 'order-1', [2])).toEqual({ odd: null, even });
  // Bound to its use: the same text as a request gives another digest.
  expect(odd).not.toBe((await crypto.requestDigest(TENANT, 'order-1')).digest);
});
