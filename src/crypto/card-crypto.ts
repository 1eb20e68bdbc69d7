// Card-level cryptography: seals card secrets under tenant data keys, and computes keyed fingerprints and digests.
import { createHmac } from 'node:crypto';
import { parityOf, type CardFingerprint, type Fingerprints } from '../domain/fingerprints';
import { Pan } from '../domain/pan';
import type { CardCrypto, CardSealer, CardSecret, DataKeyStore, RequestDigest, SealedCard, Tenant } from '../domain/ports';
import { Secret } from '../domain/secret';
import { VaultError } from '../errors';
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

function sealCard(tenantId: string, dataKey: { id: string; key: Buffer }, token: string, secret: CardSecret): SealedCard {
  const plaintext = Buffer.from(JSON.stringify({ n: secret.pan.reveal(), h: secret.holderName }), 'utf8');
  const sealed = seal(dataKey.key, plaintext, cardAad(tenantId, token));
  plaintext.fill(0);
  return { dataKeyId: dataKey.id, ...sealed };
}

export function createCardCrypto(keyring: Keyring): CardCrypto {
  return {
    async seal(tenantId, token, secret: CardSecret): Promise<SealedCard> {
      return sealCard(tenantId, await keyring.sealingKey(tenantId), token, secret);
    },

    async sealer(tenantId): Promise<CardSealer> {
      const current = await keyring.sealingKey(tenantId);
      let seals = 0;
      return (token, secret) => {
        // sealingKey counted the first use; each further seal counts one more, as a seal of its own would.
        if (seals++ > 0) keyring.countSeal(tenantId, current.id);
        return sealCard(tenantId, current, token, secret);
      };
    },

    async open(tenantId, token, sealed: SealedCard, dataKeys?: Pick<DataKeyStore, 'findDataKey'>): Promise<CardSecret> {
      const key = await keyring.openingKey(tenantId, sealed.dataKeyId, dataKeys);
      const plaintext = open(key, sealed, cardAad(tenantId, token));
      try {
        const body = JSON.parse(plaintext.toString('utf8')) as { n: string; h: string | null };
        return { pan: Pan.parse(body.n), holderName: body.h };
      } catch {
        throw new VaultError('internal_error', 'a sealed value failed authentication');
      } finally {
        plaintext.fill(0);
      }
    },

    async sealCvc(tenantId, token, cvc: Secret<string>): Promise<SealedCard> {
      const { id, key } = await keyring.sealingKey(tenantId);
      return { dataKeyId: id, ...seal(key, Buffer.from(cvc.reveal(), 'utf8'), cvcAad(tenantId, token)) };
    },

    async openCvc(tenantId, token, sealed: SealedCard): Promise<Secret<string>> {
      const key = await keyring.openingKey(tenantId, sealed.dataKeyId);
      return new Secret(open(key, sealed, cvcAad(tenantId, token)).toString('utf8'), 'cvc');
    },

    async sealWebhookSecret(tenantId, endpointId, secret: Secret<string>): Promise<SealedCard> {
      const { id, key } = await keyring.sealingKey(tenantId);
      return { dataKeyId: id, ...seal(key, Buffer.from(secret.reveal(), 'utf8'), webhookSecretAad(tenantId, endpointId)) };
    },

    async openWebhookSecret(tenantId, endpointId, sealed: SealedCard): Promise<Secret<string>> {
      const key = await keyring.openingKey(tenantId, sealed.dataKeyId);
      return new Secret(open(key, sealed, webhookSecretAad(tenantId, endpointId)).toString('utf8'), 'webhook secret');
    },

    async fingerprint(tenant: Tenant, pan: Pan): Promise<CardFingerprint> {
      const view = await keyring.fingerprintView(tenant.id);
      const columns: Fingerprints = { odd: null, even: null };
      for (const generation of view.write) columns[parityOf(generation)] = hmacFingerprint(await keyring.fingerprintKey(tenant.id, generation), pan);
      const parity = parityOf(view.current);
      return { columns, lookup: { parity, value: columns[parity]! } };
    },

    async fingerprintView(tenant: Tenant) {
      return keyring.fingerprintView(tenant.id);
    },

    async requestDigest(tenant: Tenant, canonicalRequest: string, generation?: number): Promise<RequestDigest> {
      const keyedBy = generation ?? (await keyring.fingerprintView(tenant.id)).current;
      const key = await keyring.fingerprintKey(tenant.id, keyedBy);
      return { generation: keyedBy, digest: keyedDigest(key, 'idempotency', canonicalRequest) };
    },

    async idempotencyKeyDigests(tenantId: string, idempotencyKey: string, generations?: number[]): Promise<Fingerprints> {
      const digests: Fingerprints = { odd: null, even: null };
      for (const generation of generations ?? (await keyring.fingerprintView(tenantId)).write) {
        digests[parityOf(generation)] = keyedDigest(await keyring.fingerprintKey(tenantId, generation), 'idempotency-key', idempotencyKey);
      }
      return digests;
    },
  };
}
