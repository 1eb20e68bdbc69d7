// A data key whose generation was under way when a KMS key rotation reached the instance is not made the
// tenant's sealing key: it was wrapped under the old KMS key, and cards sealed with it after the rotation's
// start would escape `keys rotate --reencrypt-cards` (which re-seals cards under data keys older than the start).
import { Keyring } from '../../src/crypto/keyring';
import type { DataKeyStore, FingerprintKeyStore, Kms, StoredDataKey, WrappedKey } from '../../src/domain/ports';

function fakes() {
  const rows: StoredDataKey[] = [];
  let release: () => void = () => undefined;
  let hold = false;
  const kms = {
    async generateDataKey() {
      if (hold) await new Promise<void>((resolve) => (release = resolve));
      return { plaintext: Buffer.alloc(32, rows.length + 1), wrapped: { kmsKeyId: `kms-${rows.length}`, ciphertext: Buffer.alloc(8) } as WrappedKey };
    },
  } as unknown as Kms;
  const store = {
    async insertDataKey(key: { tenantId: string; wrapped: WrappedKey }) {
      const row = { id: String(rows.length + 1), tenantId: key.tenantId, wrapped: key.wrapped, createdAt: new Date() } as unknown as StoredDataKey;
      rows.push(row);
      return row;
    },
    async findDataKey(id: string) {
      return rows.find((r) => r.id === id);
    },
  } as unknown as DataKeyStore & FingerprintKeyStore;
  return { kms, store, rows, holdNext: () => (hold = true), releaseHeld: () => { hold = false; release(); } };
}

describe('Keyring sealing keys across a key rotation', () => {
  it('does not seal with a key begun under the previous generation', async () => {
    const f = fakes();
    const keyring = new Keyring(f.kms, f.store, { maxAgeMs: 3_600_000, maxUses: 1_000_000, maxEntries: 100 });
    f.holdNext();
    const sealing = keyring.sealingKey('tenant-a');
    await new Promise((resolve) => setImmediate(resolve));
    // The rotation reaches this instance while the first key is still being generated.
    keyring.useGeneration(1);
    f.releaseHeld();
    const key = await sealing;
    expect(f.rows.map((r) => r.id)).toEqual(['1', '2']);
    expect(key.id).toBe('2');
    expect((await keyring.sealingKey('tenant-a')).id).toBe('2');
    // The first key still opens whatever it sealed.
    expect((await keyring.openingKey('tenant-a', '1')).key).toEqual(Buffer.alloc(32, 1));
  });

  it('keeps sealing with its key when no rotation came in between', async () => {
    const f = fakes();
    const keyring = new Keyring(f.kms, f.store, { maxAgeMs: 3_600_000, maxUses: 1_000_000, maxEntries: 100 });
    const first = await keyring.sealingKey('tenant-a');
    expect((await keyring.sealingKey('tenant-a')).id).toBe(first.id);
    expect(f.rows).toHaveLength(1);
  });
});
