// Roles and what they grant: deny by default, detokenize only for a listed purpose, revealing only listed fields.
import { VaultError } from '../errors';
import type { Tenant } from './ports';

/** `updater`: enrollment, settings, runs and refreshes of the account updater; `webhooks`: endpoints and deliveries. */
export const ACTIONS = ['tokenize', 'read', 'update', 'delete', 'detokenize', 'audit.read', 'admin', 'updater', 'webhooks'] as const;
export type Action = (typeof ACTIONS)[number];

/** `cvc` is revealed only for purpose authorization, and only once: see domain/cvc.ts. */
export const REVEALABLE_FIELDS = ['number', 'exp_month', 'exp_year', 'holder_name', 'cvc'] as const;
export type RevealableField = (typeof REVEALABLE_FIELDS)[number];

export interface Role {
  name: string;
  description: string;
  actions: ReadonlySet<Action>;
  detokenize: { purposes: ReadonlySet<string>; reveal: readonly RevealableField[] } | undefined;
  /** Requests per minute per API key, by action. loadPolicies fills in every granted action; a role built by hand may omit it. */
  rateLimits?: ReadonlyMap<Action, number>;
}

/** Per minute per API key when a role sets none. Detokenize is tighter: it is the one call that returns card data. */
export const DEFAULT_RATE_LIMITS: Readonly<Record<Action, number>> = {
  tokenize: 1200,
  read: 1200,
  update: 1200,
  delete: 1200,
  detokenize: 600,
  'audit.read': 60,
  admin: 60,
  updater: 600,
  webhooks: 60,
};

export function rateLimitOf(role: Role, action: Action): number {
  return role.rateLimits?.get(action) ?? DEFAULT_RATE_LIMITS[action];
}

export type Policies = ReadonlyMap<string, Role>;

export interface Principal {
  tenant: Tenant;
  apiKeyId: string;
  role: Role;
}

export function grants(principal: Principal, action: Action): boolean {
  return principal.role.actions.has(action);
}

/** The refusal of an action the key's role does not grant, wherever it is checked. */
export function notGranted(action: Action): VaultError {
  return new VaultError('forbidden', `this key's role does not grant ${action}`);
}

export function authorize(principal: Principal, action: Action): void {
  if (!grants(principal, action)) throw notGranted(action);
}

/** Checks the action and the purpose; returns the fields this role may see. */
export function authorizeDetokenize(principal: Principal, purpose: string): readonly RevealableField[] {
  authorize(principal, 'detokenize');
  const grant = principal.role.detokenize;
  if (!grant || !grant.purposes.has(purpose)) {
    throw new VaultError('purpose_not_allowed', "this key's role may not detokenize for this purpose");
  }
  return grant.reveal;
}
