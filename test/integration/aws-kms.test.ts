// The AWS KMS adapter through the real SDK against moto, behind a proxy that fakes throttling and outages.
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { createAwsKms } from '../../src/crypto/aws-kms';
import { AWS_KMS_ATTEMPTS, KMS_CALL_DEADLINE_MS } from '../../src/crypto/kms-limits';
import { KEY_ROTATION_POLL_MS, KEY_ROTATION_SETTLE_MS } from '../../src/dependencies';
import type { KeyContext, Kms } from '../../src/domain/ports';
import { isVaultError } from '../../src/errors';
import { startKmsProxy, type KmsProxy } from '../support/kms-proxy';
import { createSymmetricKey, startMoto, TEST_CREDENTIALS, TEST_REGION, type MotoServer } from '../support/moto';

jest.setTimeout(30_000);

const acme: KeyContext = { tenantId: 'tenant-acme', purpose: 'card-data' };

let moto: MotoServer | undefined;
let proxy: KmsProxy;
let keyA: { keyId: string; arn: string };
let keyB: { keyId: string; arn: string };
let kms: Kms;

beforeAll(async () => {
  moto = await startMoto();
  proxy = await startKmsProxy(moto.endpoint);
  keyA = await createSymmetricKey(moto.endpoint);
  keyB = await createSymmetricKey(moto.endpoint);
  kms = kmsThroughProxy();
});

afterAll(async () => {
  await proxy?.stop();
  await moto?.stop();
});

afterEach(async () => {
  proxy.forward();
  await proxy.up();
});

function kmsThroughProxy(overrides: { maxAttempts?: number; requestTimeoutMs?: number; callDeadlineMs?: number } = {}): Kms {
  return createAwsKms({
    keyId: keyA.keyId,
    endpoint: proxy.endpoint,
    region: TEST_REGION,
    credentials: TEST_CREDENTIALS,
    ...overrides,
  });
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('createAwsKms against moto', () => {
  it('generates a 32-byte data key that decrypts to the same bytes, wrapped under the key ARN', async () => {
    const dataKey = await kms.generateDataKey(acme);

    expect(dataKey.plaintext).toHaveLength(32);
    expect(dataKey.wrapped.kmsKeyId).toBe(keyA.arn);
    expect((await kms.decryptDataKey(dataKey.wrapped, acme)).equals(dataKey.plaintext)).toBe(true);
  });

  it('refuses with internal_error to decrypt under another tenant or purpose', async () => {
    const { wrapped } = await kms.generateDataKey(acme);

    for (const context of [{ ...acme, tenantId: 'tenant-globex' }, { ...acme, purpose: 'fingerprint' as const }]) {
      const err = await rejection(kms.decryptDataKey(wrapped, context));
      expect(isVaultError(err, 'internal_error')).toBe(true);
      expect((err as Error).message).toBe('internal_error: a data key could not be unwrapped');
      expect(JSON.stringify(err)).not.toContain(wrapped.ciphertext.toString('base64'));
    }
  });

  it('refuses with internal_error a blob presented as wrapped by another key', async () => {
    const { wrapped } = await kms.generateDataKey(acme);

    const err = await rejection(kms.decryptDataKey({ ...wrapped, kmsKeyId: keyB.arn }, acme));

    expect(isVaultError(err, 'internal_error')).toBe(true);
  });

  it('refuses with internal_error a wrapped key with a flipped bit', async () => {
    const { wrapped } = await kms.generateDataKey(acme);
    const ciphertext = Buffer.from(wrapped.ciphertext);
    ciphertext[ciphertext.length - 1] = (ciphertext[ciphertext.length - 1] ?? 0) ^ 0x01;

    const err = await rejection(kms.decryptDataKey({ ...wrapped, ciphertext }, acme));

    expect(isVaultError(err, 'internal_error')).toBe(true);
  });

  it('re-encrypts under a second key, after which only that key opens it', async () => {
    const dataKey = await kms.generateDataKey(acme);

    const rewrapped = await kms.reEncrypt(dataKey.wrapped, acme, keyB.arn);

    expect(rewrapped.kmsKeyId).toBe(keyB.arn);
    expect((await kms.decryptDataKey(rewrapped, acme)).equals(dataKey.plaintext)).toBe(true);
    const pinnedWrong = await rejection(kms.decryptDataKey({ ...rewrapped, kmsKeyId: keyA.arn }, acme));
    expect(isVaultError(pinnedWrong, 'internal_error')).toBe(true);
  });

  it('refuses with internal_error to re-encrypt under another tenant', async () => {
    const { wrapped } = await kms.generateDataKey(acme);

    const err = await rejection(kms.reEncrypt(wrapped, { ...acme, tenantId: 'tenant-globex' }, keyB.arn));

    expect(isVaultError(err, 'internal_error')).toBe(true);
  });

  it('resolves a symmetric encryption key to its ARN, and refuses a key that cannot wrap data keys before any rotation uses it', async () => {
    expect(await kms.resolveKeyId(keyB.keyId)).toBe(keyB.arn);
    // Enabled, but RSA or HMAC: GenerateDataKey and ReEncrypt would fail under it on every instance once a rotation named it.
    const client = new KMSClient({ endpoint: moto!.endpoint, region: TEST_REGION, credentials: TEST_CREDENTIALS });
    try {
      for (const spec of [
        { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' },
        { KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' },
        { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' },
      ] as const) {
        const created = await client.send(new CreateKeyCommand({ ...spec, Description: 'cardvault test: not for data keys' }));
        const err = await rejection(kms.resolveKeyId(created.KeyMetadata!.KeyId!));
        expect(isVaultError(err, 'internal_error')).toBe(true);
        expect((err as Error).message).toMatch(/not a symmetric encryption key/);
      }
    } finally {
      client.destroy();
    }
  });
});

describe('createAwsKms when KMS misbehaves', () => {
  it('fails with kms_unavailable while KMS is down and recovers with the same client', async () => {
    const { wrapped } = await kms.generateDataKey(acme);
    await proxy.down();

    const generating = await rejection(kms.generateDataKey(acme));
    const decrypting = await rejection(kms.decryptDataKey(wrapped, acme));
    expect(isVaultError(generating, 'kms_unavailable')).toBe(true);
    expect(isVaultError(decrypting, 'kms_unavailable')).toBe(true);

    await proxy.up();
    await expect(kms.generateDataKey(acme)).resolves.toHaveProperty('plaintext');
    expect(await kms.decryptDataKey(wrapped, acme)).toHaveLength(32);
  });

  it('fails with kms_unavailable when KMS accepts the connection and never answers', async () => {
    const impatient = kmsThroughProxy({ maxAttempts: 2, requestTimeoutMs: 300 });
    const before = proxy.requestCount;
    proxy.stall();

    const err = await rejection(impatient.generateDataKey(acme));

    expect(isVaultError(err, 'kms_unavailable')).toBe(true);
    expect(proxy.requestCount - before).toBe(2);
  });

  it('gives up at the call deadline on a KMS that never answers, however long the SDK would go on retrying', async () => {
    const persistent = kmsThroughProxy({ maxAttempts: 10, requestTimeoutMs: 5000, callDeadlineMs: 500 });
    proxy.stall();

    const started = Date.now();
    const err = await rejection(persistent.generateDataKey(acme));
    const elapsed = Date.now() - started;

    expect(isVaultError(err, 'kms_unavailable')).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(1500);
  });

  it('with the production limits, ends a GenerateDataKey that never gets an answer before key rotation stops waiting for it', async () => {
    // keys rotate re-wraps once every instance has polled (twice the interval) and what one began with the old key
    // id has ended: the call must be over, retries and all, in what the wait leaves after the polls.
    const production = kmsThroughProxy();
    const before = proxy.requestCount;
    proxy.stall();

    const started = Date.now();
    const err = await rejection(production.generateDataKey(acme));
    const elapsed = Date.now() - started;

    expect(isVaultError(err, 'kms_unavailable')).toBe(true);
    expect(proxy.requestCount - before).toBe(AWS_KMS_ATTEMPTS.maxAttempts);
    expect(elapsed).toBeLessThanOrEqual(KMS_CALL_DEADLINE_MS + 100);
    expect(elapsed + 1000).toBeLessThanOrEqual(KEY_ROTATION_SETTLE_MS - 2 * KEY_ROTATION_POLL_MS);
  });

  it('rides out throttling: the SDK retries with backoff and the call succeeds', async () => {
    const before = proxy.requestCount;
    proxy.throttle(2);

    const dataKey = await kms.generateDataKey(acme);

    expect(dataKey.plaintext).toHaveLength(32);
    expect(proxy.requestCount - before).toBe(3);
  });

  it('fails with kms_unavailable when throttling outlasts maxAttempts', async () => {
    const before = proxy.requestCount;
    proxy.throttle(50);

    const err = await rejection(kms.generateDataKey(acme));

    expect(isVaultError(err, 'kms_unavailable')).toBe(true);
    expect(proxy.requestCount - before).toBe(AWS_KMS_ATTEMPTS.maxAttempts);
  });
});
