// The card verification code: accepted with a card, held sealed for a short time outside PostgreSQL, and
// revealed at most once, to an authorization by a role allowed to see it.
import { VaultError } from '../errors';
import type { CardCrypto, CvcStore } from './ports';
import { Secret } from './secret';

/** Only an authorization needs the CVC: refunds, recurring charges and everything else go without it. */
export const CVC_PURPOSE = 'authorization';

export function parseCvc(value: unknown, brand: string): Secret<string> {
  const digits = brand === 'amex' ? 4 : 3;
  if (typeof value !== 'string' || !new RegExp(`^[0-9]{${digits}}$`).test(value)) {
    throw new VaultError('invalid_cvc', `the CVC must be ${digits} digits for this card`, { pointer: '/card/cvc' });
  }
  return new Secret(value, 'cvc');
}

export class CvcHolder {
  constructor(
    private readonly store: CvcStore,
    private readonly crypto: CardCrypto,
    private readonly ttlSeconds: number,
  ) {}

  /**
   * Holds the CVC; false when it cannot be sealed (a new data key, with the KMS unavailable) or stored. Either way
   * the card is vaulted all the same, without it: it is committed, and its Idempotency-Key consumed, before this runs.
   */
  async hold(tenantId: string, token: string, cvc: Secret<string>): Promise<boolean> {
    try {
      await this.store.hold(tenantId, token, await this.crypto.sealCvc(tenantId, token, cvc), this.ttlSeconds);
      return true;
    } catch {
      return false;
    }
  }

  /** Takes the CVC out for good; undefined when none is held (expired, taken, or its store unavailable). */
  async take(tenantId: string, token: string): Promise<string | undefined> {
    const sealed = await this.store.take(tenantId, token).catch(() => undefined);
    return sealed && (await this.crypto.openCvc(tenantId, token, sealed)).reveal();
  }

  held(tenantId: string, token: string): Promise<boolean> {
    return this.store.held(tenantId, token).catch(() => false);
  }

  async discard(tenantId: string, token: string): Promise<void> {
    await this.store.discard(tenantId, token).catch(() => undefined);
  }
}
