// The API-key cache: a key revoked on another instance stops authenticating here within API_KEY_CACHE_SECONDS,
// measured on a monotonic clock, so a wall-clock step back cannot stretch it.
import { isVaultError } from '../../src/errors';
import { buildHarness, type Harness } from '../support/harness';

let h: Harness;
/** Added to the wall clock (Date.now) from before the vault is built, so whatever reads it sees the step. */
let wallClockStepMs = 0;
const wallClock = Date.now;

beforeAll(async () => {
  jest.spyOn(Date, 'now').mockImplementation(() => wallClock() + wallClockStepMs);
  h = await buildHarness({ apiKeyCacheSeconds: 1 });
});
afterAll(async () => {
  await h.close();
  jest.restoreAllMocks();
});

const rejection = (secret: string) =>
  h.parts.principals.authenticate(secret).then(
    () => undefined,
    (err: unknown) => err,
  );

it('reuses a key for the cache time, then sees its revocation even after the wall clock steps back an hour', async () => {
  const { tenant, keys } = await h.tenant(['merchant']);
  const secret = keys.merchant!;
  expect((await h.parts.principals.authenticate(secret)).tenant.id).toBe(tenant.id);

  // Revoked in the store, as another instance's `keys revoke` does: this instance's cache is not cleared.
  const [record] = await h.parts.tenants.listApiKeys(tenant.id);
  expect(await h.parts.tenants.revokeApiKey(record!.id)).toBeDefined();
  expect((await h.parts.principals.authenticate(secret)).apiKeyId).toBe(record!.id);

  wallClockStepMs = -3600 * 1000;
  try {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(isVaultError(await rejection(secret), 'unauthenticated')).toBe(true);
  } finally {
    wallClockStepMs = 0;
  }
});

it('never caches a revoked key as valid: one revoked before its first use is refused every time', async () => {
  const { tenant, keys } = await h.tenant(['merchant']);
  const [record] = await h.parts.tenants.listApiKeys(tenant.id);
  expect(await h.parts.tenants.revokeApiKey(record!.id)).toBeDefined();
  for (let i = 0; i < 3; i += 1) expect(isVaultError(await rejection(keys.merchant!), 'unauthenticated')).toBe(true);
});
