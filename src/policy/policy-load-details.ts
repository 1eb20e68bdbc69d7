// What the policy.load audit event says about the roles loaded: their names, and a digest of each one's grants.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../audit/canonical-json';
import { rateLimitOf, type Policies, type Role } from '../domain/policy';

/**
 * `sha256:` and the hex SHA-256 of the role's grants in RFC 8785 JSON: actions, detokenize purposes and fields,
 * and the rate limit each action runs under. Order in the file and the description do not count; a widened grant does.
 */
export function grantsDigest(role: Role): string {
  const actions = [...role.actions].sort();
  const grants = {
    actions,
    detokenize: role.detokenize ? { purposes: [...role.detokenize.purposes].sort(), reveal: [...role.detokenize.reveal].sort() } : null,
    // The limit in force, so a role built without rateLimits digests as one loaded with the defaults written out.
    rate_limits_per_minute: Object.fromEntries(actions.map((action) => [action, rateLimitOf(role, action)])),
  };
  return `sha256:${createHash('sha256').update(canonicalJson(grants), 'utf8').digest('hex')}`;
}

/** `roles` stays the list of names it has always been; `grants` maps each name to its digest, so a changed grant shows. */
export function policyLoadDetails(policies: Policies): { roles: string[]; grants: Record<string, string> } {
  const roles = [...policies.keys()];
  return { roles, grants: Object.fromEntries(roles.map((name) => [name, grantsDigest(policies.get(name)!)])) };
}
