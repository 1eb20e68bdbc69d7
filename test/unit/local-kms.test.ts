// The file-backed KMS: key file lifecycle, context binding, tamper detection and what its errors may say.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { addLocalKmsKey, openLocalKms } from '../../src/crypto/local-kms';
import type { KeyContext, WrappedKey } from '../../src/domain/ports';
import { isVaultError } from '../../src/errors';

const acme: KeyContext = { tenantId: 'tenant-acme', purpose: 'card-data' };

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cardvault-local-kms-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

function withFlippedBit(wrapped: WrappedKey, byte: number): WrappedKey {
  const ciphertext = Buffer.from(wrapped.ciphertext);
  ciphertext[byte] = (ciphertext[byte] ?? 0) ^ 0x01;
  return { ...wrapped, ciphertext };
}

function expectUnwrapFailure(err: unknown): void {
  expect(isVaultError(err, 'internal_error')).toBe(true);
  expect((err as Error).message).toBe('internal_error: a data key could not be unwrapped');
}

describe('openLocalKms', () => {
  it('creates a 32-byte key file readable by its owner only, in a 0700 directory', async () => {
    const keyFile = join(dir, 'keys', 'master.key');
    const kms = await openLocalKms({ keyFile });

    expect(kms.provider).toBe('local');
    const file = await stat(keyFile);
    expect(file.size).toBe(32);
    expect(file.mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'keys'))).mode & 0o777).toBe(0o700);
  });

  it('reuses the key file, so a key wrapped by one instance opens in another', async () => {
    const keyFile = join(dir, 'master.key');
    const first = await openLocalKms({ keyFile });
    const dataKey = await first.generateDataKey(acme);

    const second = await openLocalKms({ keyFile });
    const opened = await second.decryptDataKey(dataKey.wrapped, acme);

    expect(opened.equals(dataKey.plaintext)).toBe(true);
    expect(dataKey.plaintext).toHaveLength(32);
    expect(dataKey.wrapped.kmsKeyId).toMatch(/^local:[0-9a-f]{16}$/);
  });

  it('settles on one key when several opens race to create the file, leaving no temporary file behind', async () => {
    const keyFile = join(dir, 'master.key');
    const instances = await Promise.all(Array.from({ length: 8 }, () => openLocalKms({ keyFile })));
    const dataKey = await instances[0]!.generateDataKey(acme);

    for (const kms of instances) {
      expect((await kms.decryptDataKey(dataKey.wrapped, acme)).equals(dataKey.plaintext)).toBe(true);
    }
    expect(readdirSync(dir).filter((name) => name.includes('master.key'))).toEqual(['master.key']);
  });

  it('starts despite a temporary file left by a creation that crashed before linking it into place', async () => {
    const keyFile = join(dir, 'master.key');
    writeFileSync(`${keyFile}.0123456789ab.tmp`, '', { mode: 0o600 });
    const kms = await openLocalKms({ keyFile });
    expect((await stat(keyFile)).size).toBe(32);
    const dataKey = await kms.generateDataKey(acme);
    expect((await kms.decryptDataKey(dataKey.wrapped, acme)).equals(dataKey.plaintext)).toBe(true);
  });

  it('refuses a key file of the wrong size, naming the path', async () => {
    const keyFile = join(dir, 'short.key');
    await writeFile(keyFile, Buffer.alloc(31, 7), { mode: 0o600 });

    await expect(openLocalKms({ keyFile })).rejects.toThrow(keyFile);
  });

  it('refuses a key file that group or others can read, without printing its bytes', async () => {
    const keyFile = join(dir, 'open.key');
    await openLocalKms({ keyFile });
    const master = await readFile(keyFile);
    await chmod(keyFile, 0o640);

    const err = await rejection(openLocalKms({ keyFile }));

    expect((err as Error).message).toContain(keyFile);
    expectNoLeak(err, [master]);
  });
});

describe('the local KMS key wrap', () => {
  it('round-trips a fresh random data key and re-wraps under its own key', async () => {
    const kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
    const a = await kms.generateDataKey(acme);
    const b = await kms.generateDataKey(acme);
    expect(a.plaintext.equals(b.plaintext)).toBe(false);

    const rewrapped = await kms.reEncrypt(a.wrapped, acme, a.wrapped.kmsKeyId);

    expect(rewrapped.ciphertext.equals(a.wrapped.ciphertext)).toBe(false);
    expect((await kms.decryptDataKey(rewrapped, acme)).equals(a.plaintext)).toBe(true);
  });

  it('refuses with internal_error to open a key under another tenant or purpose', async () => {
    const kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
    const { wrapped } = await kms.generateDataKey(acme);

    expectUnwrapFailure(await rejection(kms.decryptDataKey(wrapped, { ...acme, tenantId: 'tenant-globex' })));
    expectUnwrapFailure(await rejection(kms.decryptDataKey(wrapped, { ...acme, purpose: 'fingerprint' })));
    expectUnwrapFailure(await rejection(kms.reEncrypt(wrapped, { ...acme, tenantId: 'x' }, wrapped.kmsKeyId)));
  });

  it('refuses with internal_error a wrapped key with any single bit flipped', async () => {
    const kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
    const { wrapped } = await kms.generateDataKey(acme);

    for (let byte = 0; byte < wrapped.ciphertext.length; byte += 1) {
      expectUnwrapFailure(await rejection(kms.decryptDataKey(withFlippedBit(wrapped, byte), acme)));
    }
  });

  it('refuses with internal_error a truncated blob, a short tag and a key wrapped by another key file', async () => {
    const kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
    const other = await openLocalKms({ keyFile: join(dir, 'other.key') });
    const { wrapped } = await kms.generateDataKey(acme);
    const foreign = (await other.generateDataKey(acme)).wrapped;
    // Version, IV and the first 4 tag bytes, then the body: what a 4-byte-tag decipher would accept.
    const shortTag = Buffer.concat([wrapped.ciphertext.subarray(0, 17), wrapped.ciphertext.subarray(29)]);

    const failures = [
      { ...wrapped, ciphertext: wrapped.ciphertext.subarray(0, 40) },
      { ...wrapped, ciphertext: shortTag },
      foreign,
      { ...foreign, kmsKeyId: wrapped.kmsKeyId },
    ];
    for (const bad of failures) expectUnwrapFailure(await rejection(kms.decryptDataKey(bad, acme)));
  });

  it('refuses with internal_error to re-wrap under a key it does not hold', async () => {
    const kms = await openLocalKms({ keyFile: join(dir, 'master.key') });
    const { wrapped } = await kms.generateDataKey(acme);

    const err = await rejection(kms.reEncrypt(wrapped, acme, 'local:0000000000000000'));

    expect(isVaultError(err, 'internal_error')).toBe(true);
  });

  it('puts neither the master key nor a data key in any error it throws', async () => {
    const keyFile = join(dir, 'master.key');
    const kms = await openLocalKms({ keyFile });
    const master = await readFile(keyFile);
    const { plaintext, wrapped } = await kms.generateDataKey(acme);

    const errors = [
      await rejection(kms.decryptDataKey(wrapped, { ...acme, tenantId: 'tenant-globex' })),
      await rejection(kms.decryptDataKey(withFlippedBit(wrapped, 40), acme)),
      await rejection(kms.reEncrypt(wrapped, acme, 'aws:elsewhere')),
    ];

    for (const err of errors) expectNoLeak(err, [master, plaintext, wrapped.ciphertext]);
  });
});

function expectNoLeak(err: unknown, secrets: Buffer[]): void {
  const rendered = [(err as Error).message, JSON.stringify(err), inspect(err, { depth: 5 })].join('\n');
  for (const secret of secrets) {
    for (const encoding of ['hex', 'base64', 'base64url'] as const) {
      expect(rendered).not.toContain(secret.toString(encoding));
    }
  }
}

describe('rotating the local key file', () => {
  it('appends a key (the file stays 0600), wraps under it on request, and still opens what the first key wrapped', async () => {
    const keyFile = join(dir, 'kms', 'master.key');
    const kms = await openLocalKms({ keyFile });
    const before = await kms.generateDataKey(acme);
    const added = await addLocalKmsKey(keyFile);
    expect((await stat(keyFile)).size).toBe(64);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect(added).toMatch(/^local:[0-9a-f]{16}$/);
    expect(added).not.toBe(before.wrapped.kmsKeyId);
    // The running instance did not know the new key: it reads the file again when asked for it.
    const after = await kms.generateDataKey(acme, added);
    expect(after.wrapped.kmsKeyId).toBe(added);
    expect(await kms.decryptDataKey(after.wrapped, acme)).toEqual(after.plaintext);
    expect(await kms.decryptDataKey(before.wrapped, acme)).toEqual(before.plaintext);
    expect(await kms.resolveKeyId(added)).toBe(added);
  });

  it('re-wraps a key from the old master key to the new one; the new one alone then opens it', async () => {
    const keyFile = join(dir, 'master.key');
    const kms = await openLocalKms({ keyFile });
    const dataKey = await kms.generateDataKey(acme);
    const added = await addLocalKmsKey(keyFile);
    const rewrapped = await kms.reEncrypt(dataKey.wrapped, acme, added);
    expect(rewrapped.kmsKeyId).toBe(added);
    const onlyNew = join(dir, 'only-new.key');
    await writeFile(onlyNew, (await readFile(keyFile)).subarray(32), { mode: 0o600 });
    const fresh = await openLocalKms({ keyFile: onlyNew });
    expect(await fresh.decryptDataKey(rewrapped, acme)).toEqual(dataKey.plaintext);
    expectUnwrapFailure(await rejection(fresh.decryptDataKey(dataKey.wrapped, acme)));
  });

  it('refuses an unknown key id to wrap under, and a file that is not whole keys', async () => {
    const keyFile = join(dir, 'master.key');
    const kms = await openLocalKms({ keyFile });
    expect(isVaultError(await rejection(kms.generateDataKey(acme, 'local:0000000000000000')), 'internal_error')).toBe(true);
    expect(isVaultError(await rejection(kms.resolveKeyId('arn:aws:kms:elsewhere')), 'internal_error')).toBe(true);
    const odd = join(dir, 'odd.key');
    await writeFile(odd, Buffer.alloc(48, 1), { mode: 0o600 });
    await expect(openLocalKms({ keyFile: odd })).rejects.toThrow(/whole number of 32-byte keys/);
  });
});
