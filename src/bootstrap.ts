// First start outside production: a `demo` tenant with one API key per role, written to .vault/credentials.json (0600).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Principals } from './domain/principals';
import type { Policies } from './domain/policy';
import type { TenantStore } from './domain/ports';
import type { Logger } from './log';

export const DEMO_TENANT = 'demo';

export async function createDevCredentials(options: {
  dataDir: string;
  principals: Principals;
  tenants: TenantStore;
  policies: Policies;
  log: Logger;
}): Promise<string | undefined> {
  const { principals, tenants, policies, log } = options;
  if ((await tenants.countTenants()) > 0) return undefined;

  const tenant = await principals.createTenant(DEMO_TENANT, 'system');
  const apiKeys: Record<string, string> = {};
  for (const role of policies.keys()) {
    const issued = await principals.issueApiKey(tenant.id, role, 'system', 'development credentials');
    apiKeys[role] = issued.secret.reveal();
  }
  const file = path.join(options.dataDir, 'credentials.json');
  await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  await fs.writeFile(file, `${JSON.stringify({ tenant: DEMO_TENANT, api_keys: apiKeys }, null, 2)}\n`, { mode: 0o600, flag: 'w' });
  await fs.chmod(file, 0o600);
  log.info({ file }, 'development credentials written (tenant demo, one API key per role)');
  return file;
}
