// The KMS as the vault uses it: new data keys are wrapped under the key the latest rotation made active.
import type { DataKey, KeyContext, Kms, WrappedKey } from '../domain/ports';

export class ActiveKeyKms implements Kms {
  #activeKeyId: string | undefined;

  constructor(private readonly inner: Kms) {}

  get provider(): Kms['provider'] {
    return this.inner.provider;
  }

  /** Undefined: the configured key (KMS_KEY_ID, or the key file's first key). */
  get activeKeyId(): string | undefined {
    return this.#activeKeyId;
  }

  setActiveKey(keyId: string | undefined): void {
    this.#activeKeyId = keyId;
  }

  generateDataKey(context: KeyContext, keyId = this.#activeKeyId): Promise<DataKey> {
    return this.inner.generateDataKey(context, keyId);
  }

  decryptDataKey(wrapped: WrappedKey, context: KeyContext): Promise<Buffer> {
    return this.inner.decryptDataKey(wrapped, context);
  }

  reEncrypt(wrapped: WrappedKey, context: KeyContext, destinationKeyId: string): Promise<WrappedKey> {
    return this.inner.reEncrypt(wrapped, context, destinationKeyId);
  }

  resolveKeyId(keyId: string): Promise<string> {
    return this.inner.resolveKeyId(keyId);
  }
}
