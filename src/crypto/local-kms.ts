// The file-backed KMS for development and single-node installs: owns the master key file and the wrap format.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { writeFileAtomically } from '../store/files';
import { dirname } from 'node:path';
import type { DataKey, KeyContext, Kms, WrappedKey } from '../domain/ports';
import { StartupError, VaultError } from '../errors';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT_VERSION = 1;
const WRAPPED_BYTES = 1 + IV_BYTES + TAG_BYTES + KEY_BYTES;

/**
 * The key file holds one or more 256-bit master keys, oldest first (`cardvault keys rotate` appends one). Each is
 * named `local:<first 16 hex of its SHA-256>`. A key id this process has not seen makes it read the file again,
 * so a key added by a rotation elsewhere is picked up without a restart.
 */
export async function openLocalKms(options: { keyFile: string }): Promise<Kms> {
  let keys = indexKeys(await loadOrCreateMasterKeys(options.keyFile));
  const defaultKeyId = keys.keys().next().value as string;

  async function masterKey(kmsKeyId: string): Promise<Buffer | undefined> {
    if (!keys.has(kmsKeyId) && /^local:[0-9a-f]{16}$/.test(kmsKeyId)) keys = indexKeys(await readMasterKeys(options.keyFile));
    return keys.get(kmsKeyId);
  }

  async function unwrap(wrapped: WrappedKey, context: KeyContext): Promise<Buffer> {
    const key = await masterKey(wrapped.kmsKeyId);
    if (!key) throw unwrapFailure();
    try {
      return openWrapped(key, wrapped.ciphertext, additionalData(wrapped.kmsKeyId, context));
    } catch {
      throw unwrapFailure();
    }
  }

  async function wrappingKey(keyId: string): Promise<Buffer> {
    const key = await masterKey(keyId);
    if (!key) throw new VaultError('internal_error', 'the local key file holds no key with this id');
    return key;
  }

  return {
    provider: 'local',

    async generateDataKey(context: KeyContext, keyId = defaultKeyId): Promise<DataKey> {
      const key = await wrappingKey(keyId);
      const plaintext = randomBytes(KEY_BYTES);
      const ciphertext = seal(key, plaintext, additionalData(keyId, context));
      return { plaintext, wrapped: { kmsKeyId: keyId, ciphertext } };
    },

    async decryptDataKey(wrapped: WrappedKey, context: KeyContext): Promise<Buffer> {
      return unwrap(wrapped, context);
    },

    /** A file cannot re-wrap without seeing the key, as AWS KMS can: the plaintext is in this process for an instant. */
    async reEncrypt(wrapped: WrappedKey, context: KeyContext, destinationKeyId: string): Promise<WrappedKey> {
      const destination = await wrappingKey(destinationKeyId);
      const plaintext = await unwrap(wrapped, context);
      try {
        return { kmsKeyId: destinationKeyId, ciphertext: seal(destination, plaintext, additionalData(destinationKeyId, context)) };
      } finally {
        plaintext.fill(0);
      }
    },

    async resolveKeyId(keyId: string): Promise<string> {
      await wrappingKey(keyId);
      return keyId;
    },
  };
}

function localKeyId(key: Buffer): string {
  return `local:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

function indexKeys(masterKeys: Buffer[]): Map<string, Buffer> {
  return new Map(masterKeys.map((key) => [localKeyId(key), key]));
}

/**
 * Appends a new master key to the file (written whole to a temporary file, synced and renamed over it, 0600) and
 * returns its id. The earlier keys stay: they still unwrap what they wrapped until a rotation re-wraps it.
 */
export async function addLocalKmsKey(keyFile: string): Promise<string> {
  const existing = await readMasterKeys(keyFile);
  const added = randomBytes(KEY_BYTES);
  await writeFileAtomically(keyFile, Buffer.concat([...existing, added]));
  return localKeyId(added);
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

async function loadOrCreateMasterKeys(keyFile: string): Promise<Buffer[]> {
  try {
    return await readMasterKeys(keyFile);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  const masterKey = randomBytes(KEY_BYTES);
  // Written whole, then linked into place: a crash before the link leaves no key file (the next start makes one),
  // never an empty one that every later start would refuse. The link fails if another process won the race; its
  // key is then the one everybody must use.
  try {
    await writeFileAtomically(keyFile, masterKey, { exclusive: true });
  } catch (err) {
    masterKey.fill(0);
    if (errorCode(err) === 'EEXIST') return readMasterKeys(keyFile);
    throw err;
  }
  return [masterKey];
}

/** Reads through one file handle so the checks and the read see the same file. */
async function readMasterKeys(keyFile: string): Promise<Buffer[]> {
  const handle = await open(keyFile, 'r');
  try {
    // The file appears whole (writeFileAtomically): an empty one is damaged, not another process's mid-write.
    const info = await handle.stat();
    if (!info.isFile()) throw new StartupError(`The KMS key file ${keyFile} is not a regular file`);
    if ((info.mode & 0o077) !== 0) {
      throw new StartupError(`The KMS key file ${keyFile} is accessible to group or others; chmod 600 it`);
    }
    if (info.size === 0 || info.size % KEY_BYTES !== 0) {
      throw new StartupError(`The KMS key file ${keyFile} is not a whole number of ${KEY_BYTES}-byte keys`);
    }
    const all = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(all, 0, info.size, 0);
    if (bytesRead !== info.size) throw new StartupError(`The KMS key file ${keyFile} could not be read in full`);
    return Array.from({ length: info.size / KEY_BYTES }, (_, i) => all.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES));
  } finally {
    await handle.close();
  }
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}
