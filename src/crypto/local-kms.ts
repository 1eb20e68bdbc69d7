// The file-backed KMS for development and single-node installs: owns the master key file and the wrap format.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DataKey, KeyContext, Kms, WrappedKey } from '../domain/ports';
import { VaultError } from '../errors';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT_VERSION = 1;
const WRAPPED_BYTES = 1 + IV_BYTES + TAG_BYTES + KEY_BYTES;

// An empty file may be another process's between its 'wx' open and its write; give that writer this long.
const CONCURRENT_WRITER_GRACE_MS = 1000;

export async function openLocalKms(options: { keyFile: string }): Promise<Kms> {
  const masterKey = await loadOrCreateMasterKey(options.keyFile);
  const kmsKeyId = `local:${createHash('sha256').update(masterKey).digest('hex').slice(0, 16)}`;

  function unwrap(wrapped: WrappedKey, context: KeyContext): Buffer {
    if (wrapped.kmsKeyId !== kmsKeyId) throw unwrapFailure();
    try {
      return openWrapped(masterKey, wrapped.ciphertext, additionalData(kmsKeyId, context));
    } catch {
      throw unwrapFailure();
    }
  }

  return {
    provider: 'local',

    async generateDataKey(context: KeyContext): Promise<DataKey> {
      const plaintext = randomBytes(KEY_BYTES);
      const ciphertext = seal(masterKey, plaintext, additionalData(kmsKeyId, context));
      return { plaintext, wrapped: { kmsKeyId, ciphertext } };
    },

    async decryptDataKey(wrapped: WrappedKey, context: KeyContext): Promise<Buffer> {
      return unwrap(wrapped, context);
    },

    async reEncrypt(wrapped: WrappedKey, context: KeyContext, destinationKeyId: string): Promise<WrappedKey> {
      if (destinationKeyId !== kmsKeyId) {
        throw new VaultError('internal_error', 'the local KMS holds a single key; there is no other to re-wrap under');
      }
      const plaintext = unwrap(wrapped, context);
      try {
        return { kmsKeyId, ciphertext: seal(masterKey, plaintext, additionalData(kmsKeyId, context)) };
      } finally {
        plaintext.fill(0);
      }
    },
  };
}

/** The same words for every cause, so a caller cannot tell a wrong tenant from a corrupted blob. */
function unwrapFailure(): VaultError {
  return new VaultError('internal_error', 'a data key could not be unwrapped');
}

/** Binds the wrap to its tenant, purpose and master key; keys sorted so the bytes never depend on call sites. */
function additionalData(kmsKeyId: string, context: KeyContext): Buffer {
  return Buffer.from(JSON.stringify({ kmsKeyId, purpose: context.purpose, tenantId: context.tenantId }), 'utf8');
}

function seal(masterKey: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(FORMAT_VERSION), iv, cipher.getAuthTag(), body]);
}

function openWrapped(masterKey: Buffer, wrapped: Buffer, aad: Buffer): Buffer {
  if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== FORMAT_VERSION) throw new Error('malformed');
  const iv = wrapped.subarray(1, 1 + IV_BYTES);
  const tag = wrapped.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  const body = wrapped.subarray(1 + IV_BYTES + TAG_BYTES);
  // Without authTagLength Node 20 would accept a truncated tag.
  const decipher = createDecipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const plaintext = decipher.update(body);
  try {
    decipher.final();
  } catch (err) {
    // update() already produced unauthenticated bytes; they must not linger.
    plaintext.fill(0);
    throw err;
  }
  return plaintext;
}

async function loadOrCreateMasterKey(keyFile: string): Promise<Buffer> {
  try {
    return await readMasterKey(keyFile);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  const masterKey = randomBytes(KEY_BYTES);
  let handle;
  try {
    // 'wx' fails if another process won the race; its key is then the one everybody must use.
    handle = await open(keyFile, 'wx', 0o600);
  } catch (err) {
    masterKey.fill(0);
    if (errorCode(err) === 'EEXIST') return readMasterKey(keyFile);
    throw err;
  }
  try {
    await handle.writeFile(masterKey);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return masterKey;
}

/** Reads through one file handle so the checks and the read see the same file. */
async function readMasterKey(keyFile: string): Promise<Buffer> {
  const handle = await open(keyFile, 'r');
  try {
    const deadline = Date.now() + CONCURRENT_WRITER_GRACE_MS;
    let info = await handle.stat();
    while (info.isFile() && info.size === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      info = await handle.stat();
    }
    if (!info.isFile()) throw new Error(`The KMS key file ${keyFile} is not a regular file`);
    if ((info.mode & 0o077) !== 0) {
      throw new Error(`The KMS key file ${keyFile} is accessible to group or others; chmod 600 it`);
    }
    if (info.size !== KEY_BYTES) {
      throw new Error(`The KMS key file ${keyFile} is not ${KEY_BYTES} bytes long`);
    }
    const masterKey = Buffer.alloc(KEY_BYTES);
    const { bytesRead } = await handle.read(masterKey, 0, KEY_BYTES, 0);
    if (bytesRead !== KEY_BYTES) throw new Error(`The KMS key file ${keyFile} could not be read in full`);
    return masterKey;
  } finally {
    await handle.close();
  }
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}
