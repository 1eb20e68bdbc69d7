// Card-level cryptography: seals card secrets under tenant data keys, and computes keyed fingerprints and digests.
import { createHmac } from 'node:crypto';
import { parityOf, type CardFingerprint, type Fingerprints } from '../domain/fingerprints';
import { Pan } from '../domain/pan';
import type { CardCrypto, CardSealer, CardSecret, DataKeyStore, RequestDigest, SealedCard, Tenant } from '../domain/ports';
import { Secret } from '../domain/secret';
import { VaultError } from '../errors';
import type { KeyLease } from './key-cache';
import type { Keyring } from './keyring';
import { open, seal } from './sealer';

/** Binds a ciphertext to its tenant and token: copied onto another row, it no longer opens. */
function cardAad(tenantId: string, token: string): Buffer {
  return Buffer.from(`cardvault/card/v1\u0000${tenantId}\u0000${token}`, 'utf8');
}

/** A CVC sealed for one card opens only as that card's CVC, never as a card or another card's CVC. */
function cvcAad(tenantId: string, token: string): Buffer {
  return Buffer.from(`cardvault/cvc/v1\u0000${tenantId}\u0000${token}`, 'utf8');
}

/** A webhook secret opens only for its endpoint, and never as a card or a CVC. */
function webhookSecretAad(tenantId: string, endpointId: string): Buffer {
  return Buffer.from(`cardvault/webhook-secret/v1\u0000${tenantId}\u0000${endpointId}`, 'utf8');
}

/** An HMAC-SHA-256 of `text` under a fingerprint key, bound to its use by `label` (base64url). */
function keyedDigest(key: Buffer, label: string, text: string): string {
  return createHmac('sha256', key).update(`cardvault/${label}/v1\u0000`).update(text).digest('base64url');
}

/** A number's fingerprint under one HMAC key (`fp_` + HMAC-SHA-256, base64url). */
export function hmacFingerprint(key: Buffer, pan: Pan): string {
  return `fp_${keyedDigest(key, 'fingerprint', pan.reveal())}`;
}

/** Runs `use` with a leased key, then releases it: the key is never zeroed while `use` runs. */
async function withKey<K extends KeyLease, T>(leased: Promise<K>, use: (lease: K) => T): Promise<T> {
  const lease = await leased;
  try {
    return use(lease);
  } finally {
    lease.release();
  }
}

/**
 * A sealer holds its key's lease as long as it lives (CardSealer has no end of use): the lease is released once the
 * sealer is garbage-collected, after its request, and the key zeroed then if it has left the cache.
 */
const sealerLeases = new FinalizationRegistry<KeyLease>((lease) => lease.release());

function sealCard(tenantId: string, dataKey: { id: string; key: Buffer }, token: string, secret: CardSecret): SealedCard {
  const plaintext = Buffer.from(JSON.stringify({ n: secret.pan.reveal(), h: secret.holderName }), 'utf8');
  const sealed = seal(dataKey.key, plaintext, cardAad(tenantId, token));
  plaintext.fill(0);
  return { dataKeyId: dataKey.id, ...sealed };
}

export function createCardCrypto(keyring: Keyring): CardCrypto {
  return {
    seal(tenantId, token, secret: CardSecret): Promise<SealedCard> {
      return withKey(keyring.sealingKey(tenantId), (current) => sealCard(tenantId, current, token, secret));
    },

    async sealer(tenantId): Promise<CardSealer> {
      const current = await keyring.sealingKey(tenantId);
      let seals = 0;
      const sealer: CardSealer = (token, secret) => {
        // sealingKey counted the first use; each further seal counts one more, as a seal of its own would.
        if (seals++ > 0) keyring.countSeal(tenantId, current.id);
        return sealCard(tenantId, current, token, secret);
      };
      sealerLeases.register(sealer, current);
      return sealer;
    },

    open(tenantId, token, sealed: SealedCard, dataKeys?: Pick<DataKeyStore, 'findDataKey'>): Promise<CardSecret> {
      return withKey(keyring.openingKey(tenantId, sealed.dataKeyId, dataKeys), ({ key }) => {
        const plaintext = open(key, sealed, cardAad(tenantId, token));
        try {
          const body = JSON.parse(plaintext.toString('utf8')) as { n: string; h: string | null };
          return { pan: Pan.parse(body.n), holderName: body.h };
        } catch {
          throw new VaultError('internal_error', 'a sealed value failed authentication');
        } finally {
          plaintext.fill(0);
        }
      });
    },

    sealCvc(tenantId, token, cvc: Secret<string>): Promise<SealedCard> {
      return withKey(keyring.sealingKey(tenantId), ({ id, key }) => ({
        dataKeyId: id,
        ...seal(key, Buffer.from(cvc.reveal(), 'utf8'), cvcAad(tenantId, token)),
      }));
    },

    openCvc(tenantId, token, sealed: SealedCard): Promise<Secret<string>> {
      return withKey(keyring.openingKey(tenantId, sealed.dataKeyId), ({ key }) => new Secret(open(key, sealed, cvcAad(tenantId, token)).toString('utf8'), 'cvc'));
    },

    sealWebhookSecret(tenantId, endpointId, secret: Secret<string>): Promise<SealedCard> {
      return withKey(keyring.sealingKey(tenantId), ({ id, key }) => ({
        dataKeyId: id,
        ...seal(key, Buffer.from(secret.reveal(), 'utf8'), webhookSecretAad(tenantId, endpointId)),
      }));
    },

    openWebhookSecret(tenantId, endpointId, sealed: SealedCard): Promise<Secret<string>> {
      return withKey(keyring.openingKey(tenantId, sealed.dataKeyId), ({ key }) =>
        new Secret(open(key, sealed, webhookSecretAad(tenantId, endpointId)).toString('utf8'), 'webhook secret'),
      );
    },

    async fingerprint(tenant: Tenant, pan: Pan): Promise<CardFingerprint> {
      const view = await keyring.fingerprintView(tenant.id);
      const columns: Fingerprints = { odd: null, even: null };
      for (const generation of view.write) {
        columns[parityOf(generation)] = await withKey(keyring.fingerprintKey(tenant.id, generation), ({ key }) => hmacFingerprint(key, pan));
      }
      const parity = parityOf(view.current);
      return { columns, lookup: { parity, value: columns[parity]! } };
    },

    async fingerprintView(tenant: Tenant) {
      return keyring.fingerprintView(tenant.id);
    },

    async requestDigest(tenant: Tenant, canonicalRequest: string, generation?: number): Promise<RequestDigest> {
      const keyedBy = generation ?? (await keyring.fingerprintView(tenant.id)).current;
      return { generation: keyedBy, digest: await withKey(keyring.fingerprintKey(tenant.id, keyedBy), ({ key }) => keyedDigest(key, 'idempotency', canonicalRequest)) };
    },

    async idempotencyKeyDigests(tenantId: string, idempotencyKey: string, generations?: number[]): Promise<Fingerprints> {
      const digests: Fingerprints = { odd: null, even: null };
      for (const generation of generations ?? (await keyring.fingerprintView(tenantId)).write) {
        digests[parityOf(generation)] = await withKey(keyring.fingerprintKey(tenantId, generation), ({ key }) => keyedDigest(key, 'idempotency-key', idempotencyKey));
      }
      return digests;
    },
  };
}
