// The AWS KMS adapter: owns the SDK client, its retry and timeout policy, and the translation of SDK failures.
import {
  DecryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  ReEncryptCommand,
  DescribeKeyCommand,
  type KMSClientConfig,
} from '@aws-sdk/client-kms';
import type { DataKey, KeyContext, Kms, WrappedKey } from '../domain/ports';
import { VaultError } from '../errors';
import { AWS_KMS_ATTEMPTS, KMS_CALL_DEADLINE_MS } from './kms-limits';

export interface AwsKmsOptions {
  /** The key new data keys are generated under (id, ARN or alias). */
  keyId: string;
  region?: string;
  endpoint?: string;
  /** Attempts per call including the first; the SDK's standard mode backs off exponentially between them. */
  maxAttempts?: number;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** The longest a call may take, retries included (KMS_CALL_DEADLINE_MS, which key rotation waits out; tests shorten it). */
  callDeadlineMs?: number;
  credentials?: KMSClientConfig['credentials'];
}

const DATA_KEY_BYTES = 32;

/** The data is not ours to open, or the key or its policy is misconfigured: retrying cannot help. */
const REFUSALS = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'NotFoundException',
  'AccessDeniedException',
  'KMSInvalidStateException',
  'DisabledException',
]);

/** KMS-side trouble that a later call may not meet; by now the SDK has already retried it. */
const OUTAGES = new Set(['KMSInternalException', 'DependencyTimeoutException', 'ThrottlingException']);

export function createAwsKms(options: AwsKmsOptions): Kms {
  const client = new KMSClient({
    region: options.region,
    endpoint: options.endpoint,
    credentials: options.credentials,
    retryMode: 'standard',
    maxAttempts: options.maxAttempts ?? AWS_KMS_ATTEMPTS.maxAttempts,
    requestHandler: {
      connectionTimeout: options.connectTimeoutMs ?? AWS_KMS_ATTEMPTS.connectTimeoutMs,
      requestTimeout: options.requestTimeoutMs ?? AWS_KMS_ATTEMPTS.requestTimeoutMs,
      // Without this the SDK only logs a warning when requestTimeout passes, and a hung KMS hangs us.
      throwOnRequestTimeout: true,
    },
  });

  const deadlineMs = options.callDeadlineMs ?? KMS_CALL_DEADLINE_MS;
  // Every call goes through this: nothing reaches the SDK without the deadline.
  const timed = <T extends object>(call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> => withinDeadline(deadlineMs, call);

  return {
    provider: 'aws',

    async generateDataKey(context: KeyContext, keyId = options.keyId): Promise<DataKey> {
      const out = await timed((abortSignal) =>
        client.send(
          new GenerateDataKeyCommand({
            KeyId: keyId,
            KeySpec: 'AES_256',
            EncryptionContext: encryptionContext(context),
          }),
          { abortSignal },
        ),
      ).catch(translate('a data key could not be generated'));
      if (!out.CiphertextBlob || !out.KeyId) throw incomplete();
      return {
        plaintext: dataKeyPlaintext(out.Plaintext),
        wrapped: { kmsKeyId: out.KeyId, ciphertext: asBuffer(out.CiphertextBlob) },
      };
    },

    async decryptDataKey(wrapped: WrappedKey, context: KeyContext): Promise<Buffer> {
      const out = await timed((abortSignal) =>
        client.send(
          new DecryptCommand({
            CiphertextBlob: wrapped.ciphertext,
            // Pinned so a blob naming some other key we can use is refused rather than opened.
            KeyId: wrapped.kmsKeyId,
            EncryptionContext: encryptionContext(context),
          }),
          { abortSignal },
        ),
      ).catch(translate('a data key could not be unwrapped'));
      return dataKeyPlaintext(out.Plaintext);
    },

    async reEncrypt(wrapped: WrappedKey, context: KeyContext, destinationKeyId: string): Promise<WrappedKey> {
      const out = await timed((abortSignal) =>
        client.send(
          new ReEncryptCommand({
            CiphertextBlob: wrapped.ciphertext,
            SourceKeyId: wrapped.kmsKeyId,
            SourceEncryptionContext: encryptionContext(context),
            DestinationKeyId: destinationKeyId,
            DestinationEncryptionContext: encryptionContext(context),
          }),
          { abortSignal },
        ),
      ).catch(translate('a data key could not be re-wrapped'));
      if (!out.CiphertextBlob || !out.KeyId) throw incomplete();
      return { kmsKeyId: out.KeyId, ciphertext: asBuffer(out.CiphertextBlob) };
    },

    async resolveKeyId(keyId: string): Promise<string> {
      const out = await timed((abortSignal) => client.send(new DescribeKeyCommand({ KeyId: keyId }), { abortSignal })).catch(translate('the KMS key could not be described'));
      if (!out.KeyMetadata?.Arn || out.KeyMetadata.KeyState !== 'Enabled') throw new VaultError('kms_unavailable', 'the KMS key is not enabled');
      // Only a symmetric encryption key can generate and re-encrypt data keys. Checked here, before a rotation names
      // the key: once one does, every instance generates its keys under it, and the rotation cannot be redirected.
      if (out.KeyMetadata.KeySpec !== 'SYMMETRIC_DEFAULT' || out.KeyMetadata.KeyUsage !== 'ENCRYPT_DECRYPT') {
        throw new VaultError('internal_error', 'the KMS key is not a symmetric encryption key');
      }
      return out.KeyMetadata.Arn;
    },
  };
}

/**
 * Runs one SDK call for at most `deadlineMs`: then its request is aborted (also between attempts, where the SDK is
 * only waiting) and the call fails as an outage, whether or not the SDK stops. An answer that arrives later anyway
 * is never used, and a plaintext data key in it is wiped.
 */
async function withinDeadline<T extends object>(deadlineMs: number, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let late = false;
  const answer = call(controller.signal);
  answer.then(
    (out) => {
      if (late) (out as { Plaintext?: Uint8Array }).Plaintext?.fill(0);
    },
    () => undefined,
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      controller.abort();
      // No status: KMS did not answer in time, which isOutage counts as an outage (kms_unavailable).
      reject(Object.assign(new Error('the KMS call deadline passed'), { name: 'KmsCallDeadlineExceeded' }));
    }, deadlineMs);
  });
  try {
    return await Promise.race([answer, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function encryptionContext(context: KeyContext): Record<string, string> {
  return { tenant: context.tenantId, purpose: context.purpose };
}

function dataKeyPlaintext(plaintext: Uint8Array | undefined): Buffer {
  if (!plaintext) throw incomplete();
  if (plaintext.byteLength !== DATA_KEY_BYTES) {
    plaintext.fill(0);
    throw incomplete();
  }
  return asBuffer(plaintext);
}

/** A view, not a copy: the caller can wipe the one copy of the plaintext the SDK decoded. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function incomplete(): VaultError {
  return new VaultError('internal_error', 'the KMS response is incomplete');
}

/**
 * One error per operation whatever KMS said. The SDK error is not kept: its message and raw response are
 * KMS's words, so the cause holds only names and numbers.
 */
function translate(detail: string): (err: unknown) => never {
  return (err: unknown) => {
    const failure = describeFailure(err);
    const cause = { kmsFailure: failure };
    if (!REFUSALS.has(failure.name) && isOutage(failure)) throw new VaultError('kms_unavailable', undefined, { cause });
    throw new VaultError('internal_error', detail, { cause });
  };
}

interface FailureSummary {
  name: string;
  code?: string;
  httpStatusCode?: number;
  attempts?: number;
  requestId?: string;
}

function isOutage(failure: FailureSummary): boolean {
  const status = failure.httpStatusCode;
  // No status means KMS never answered: refused, reset, timed out, DNS, or the credential source unreachable.
  // Not keyed on the socket error's code: the SDK drops it when it rewraps a foreign-realm error (under jest).
  return OUTAGES.has(failure.name) || status === undefined || status === 429 || status >= 500;
}

function describeFailure(err: unknown): FailureSummary {
  if (typeof err !== 'object' || err === null) return { name: 'unknown' };
  const e = err as {
    name?: unknown;
    code?: unknown;
    $metadata?: { httpStatusCode?: unknown; attempts?: unknown; requestId?: unknown };
  };
  const summary: FailureSummary = { name: typeof e.name === 'string' ? e.name : 'unknown' };
  if (typeof e.code === 'string') summary.code = e.code;
  if (typeof e.$metadata?.httpStatusCode === 'number') summary.httpStatusCode = e.$metadata.httpStatusCode;
  if (typeof e.$metadata?.attempts === 'number') summary.attempts = e.$metadata.attempts;
  if (typeof e.$metadata?.requestId === 'string') summary.requestId = e.$metadata.requestId;
  return summary;
}
