// Tenants, API keys and authentication: who is calling, for which tenant, in which role.
import { isVaultError, VaultError } from '../errors';
import { mayHoldCardNumber } from './pan';
import type { Policies, Principal } from './policy';
import type { ApiKeyRecord, AuditTrail, Kms, Tenant, TenantStore } from './ports';
import { Secret } from './secret';

export interface ApiKeyCodec {
  generate(): { secret: string; hash: Buffer };
  hash(secret: string): Buffer;
  looksValid(secret: string): boolean;
}

export interface PrincipalsDeps {
  tenants: TenantStore;
  /** The CLI passes a trail that names the individual who ran it in each `cli` event (PCI DSS 10.2.1.2; cli.ts, withOperator). */
  audit: AuditTrail;
  kms: Kms;
  policies: Policies;
  apiKeys: ApiKeyCodec;
  /** How long a successful lookup is reused; a revocation takes effect on every instance within this time. */
  cacheMs: number;
  /**
   * Milliseconds on a clock that only moves forward (default performance.now()): the wall clock can step back
   * (NTP, an operator), and would then keep a cached, possibly revoked, key valid for longer than cacheMs.
   */
  now?: () => number;
}

/**
 * Why a bearer secret was refused, for its `auth.failure` event; both are answered alike (401). A revoked key names
 * itself and its tenant, so its continued use (a leaked key?) shows in that tenant's trail.
 */
export type KeyRefusal = { reason: 'unknown_key' } | { reason: 'revoked_key'; tenantId: string; apiKeyId: string };

const MAX_CACHED_KEYS = 10_000;
/** How old a tenant left without its tenant.create event must be before creating it again completes it. */
const UNAUDITED_TENANT_AFTER_MS = 60_000;
// Starts with a letter and holds no long digit run: names are written to logs and the audit trail.
const TENANT_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

export class Principals {
  readonly #cache = new Map<string, { principal: Principal; expiresAt: number }>();
  readonly #now: () => number;

  constructor(private readonly deps: PrincipalsDeps) {
    this.#now = deps.now ?? (() => performance.now());
  }

  /** Resolves a bearer secret to its principal; every failure is the same 401. */
  async authenticate(secret: string): Promise<Principal> {
    const identified = await this.identify(secret);
    if ('refused' in identified) throw new VaultError('unauthenticated');
    return identified.principal;
  }

  /**
   * Resolves a bearer secret to its principal, or says why it is refused: one indexed lookup by the key's hash
   * whether the key is unknown, revoked or valid. Only a valid key is cached.
   */
  async identify(secret: string): Promise<{ principal: Principal } | { refused: KeyRefusal }> {
    if (!this.deps.apiKeys.looksValid(secret)) return { refused: { reason: 'unknown_key' } };
    const hash = this.deps.apiKeys.hash(secret);
    const cacheKey = hash.toString('base64');
    const cached = this.#cache.get(cacheKey);
    if (cached && cached.expiresAt > this.#now()) return { principal: cached.principal };

    const found = await this.deps.tenants.findApiKey(hash);
    if (found && found.key.revokedAt !== null) {
      this.#cache.delete(cacheKey);
      return { refused: { reason: 'revoked_key', tenantId: found.tenant.id, apiKeyId: found.key.id } };
    }
    const role = found && this.deps.policies.get(found.key.role);
    if (!found || !role) {
      this.#cache.delete(cacheKey);
      return { refused: { reason: 'unknown_key' } };
    }
    const principal: Principal = { tenant: found.tenant, apiKeyId: found.key.id, role };
    if (this.deps.cacheMs > 0) {
      if (this.#cache.size >= MAX_CACHED_KEYS) this.#cache.delete(this.#cache.keys().next().value as string);
      this.#cache.set(cacheKey, { principal, expiresAt: this.#now() + this.deps.cacheMs });
    }
    return { principal };
  }

  /**
   * `unauditedAfterMs`: how old a tenant left without its tenant.create event must be before this completes it
   * (see unaudited); a caller that holds a lock against every other creator may say 0.
   */
  async createTenant(name: string, principal: string, unauditedAfterMs = UNAUDITED_TENANT_AFTER_MS): Promise<Tenant> {
    if (!TENANT_NAME.test(name) || mayHoldCardNumber(name)) {
      throw new VaultError('invalid_field', 'a tenant name is a lowercase letter then up to 62 letters, digits, - or _, with no 12-digit run', {
        pointer: '/name',
      });
    }
    // The id is chosen here so the fingerprint key's encryption context can name it.
    const id = globalThis.crypto.randomUUID();
    const tenantKey = await this.deps.kms.generateDataKey({ tenantId: id, purpose: 'fingerprint' });
    tenantKey.plaintext.fill(0);
    const { tenant, completed } = await this.deps.tenants.createTenant(id, name, tenantKey.wrapped).then(
      (created) => ({ tenant: created, completed: false }),
      (err: unknown) => this.unaudited(name, err, unauditedAfterMs),
    );
    await this.deps.audit.record({
      tenantId: tenant.id,
      principal,
      action: 'tenant.create',
      outcome: 'success',
      details: { name, ...(completed ? { completes_earlier_attempt: true } : {}) },
    });
    return tenant;
  }

  /**
   * A name taken by an earlier attempt that committed the tenant but died before its tenant.create event: creating
   * it again records that event, so no tenant is ever missing from the trail. Only once the tenant is a minute old
   * (by default), so that an attempt still recording its event (two processes creating one name at once) is not
   * doubled. Any other taken name is tenant_exists.
   */
  private async unaudited(name: string, err: unknown, afterMs: number): Promise<{ tenant: Tenant; completed: true }> {
    if (!(isVaultError(err) && err.code === 'tenant_exists')) throw err;
    const tenant = await this.deps.tenants.findUnauditedTenant(name, afterMs);
    if (!tenant) {
      throw new VaultError('tenant_exists', 'the name is taken; if an earlier attempt to create it failed, creating it again after a minute completes it', {
        pointer: '/name',
      });
    }
    return { tenant, completed: true };
  }

  async issueApiKey(tenantId: string, role: string, principal: string, label: string | null = null): Promise<{ key: ApiKeyRecord; secret: Secret<string> }> {
    if (label !== null && (label.length > 100 || mayHoldCardNumber(label))) {
      throw new VaultError('invalid_field', 'a key label is at most 100 characters with no 12-digit run', { pointer: '/label' });
    }
    if (!this.deps.policies.has(role)) {
      throw new VaultError('invalid_field', 'the role is not defined in policies/', { pointer: '/role' });
    }
    const { secret, hash } = this.deps.apiKeys.generate();
    const key = await this.deps.tenants.insertApiKey({ tenantId, role, keyHash: hash, label });
    await this.deps.audit.record({
      tenantId,
      principal,
      action: 'api_key.create',
      outcome: 'success',
      details: { api_key_id: key.id, role },
    });
    return { key, secret: new Secret(secret, 'api key') };
  }

  async revokeApiKey(id: string, principal: string): Promise<boolean> {
    const revoked = await this.deps.tenants.revokeApiKey(id);
    if (revoked) {
      await this.deps.audit.record({
        tenantId: revoked.tenantId,
        principal,
        action: 'api_key.revoke',
        outcome: 'success',
        details: { api_key_id: id },
      });
    }
    // Only this instance's cache can be cleared here; others drop the key within cacheMs.
    this.#cache.clear();
    return revoked !== undefined;
  }
}
