// First start outside production: a `demo` tenant with one API key per role, written to .vault/credentials.json (0600).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Principals } from './domain/principals';
import type { Policies } from './domain/policy';
import type { TenantStore } from './domain/ports';
import { isVaultError } from './errors';
import type { Logger } from './log';
import type { Db } from './store/db';
import { writeFileAtomically } from './store/files';

export const DEMO_TENANT = 'demo';
const DEV_CREDENTIALS_LOCK = 0x64657663; // "devc"; migrations take "card" (store/migrate.ts)

export interface DevCredentialsOptions {
  dataDir: string;
  /** Where the tenants are: its lock keeps two instances starting at once from both writing credentials. */
  db: Pick<Db, 'exclusively'>;
  principals: Principals;
  tenants: TenantStore;
  policies: Policies;
  log: Logger;
}

/**
 * Writes the development credentials on a database with no tenant yet. A first start that stopped after creating
 * the demo tenant but before writing the file (Ctrl-C, a crash) left keys whose secrets nobody has: the next
 * start finds only that tenant and no file, revokes those keys and issues a new set. A database holding any other
 * tenant is an operator's, and is left alone. Instances starting together on one database take turns (a lock):
 * the later ones find the credentials written.
 */
export async function createDevCredentials(options: DevCredentialsOptions): Promise<string | undefined> {
  return options.db.exclusively(DEV_CREDENTIALS_LOCK, () => writeDevCredentials(options));
}

async function writeDevCredentials(options: DevCredentialsOptions): Promise<string | undefined> {
  const { principals, tenants, policies, log } = options;
  const file = path.join(options.dataDir, 'credentials.json');
  const count = await tenants.countTenants();
  const unfinished = count === 1 ? await tenants.findTenantByName(DEMO_TENANT) : undefined;
  if (count > 0 && !unfinished) return undefined;
  if (unfinished && (await exists(file))) return undefined;

  // Under the lock no other start is creating it: an unfinished tenant's missing tenant.create is recorded at once.
  const tenant = await principals.createTenant(DEMO_TENANT, 'system', 0).catch((err: unknown) => {
    if (unfinished && isVaultError(err) && err.code === 'tenant_exists') return unfinished;
    throw err;
  });
  if (unfinished) {
    for (const key of await tenants.listApiKeys(tenant.id)) if (!key.revokedAt) await principals.revokeApiKey(key.id, 'system');
  }
  const apiKeys: Record<string, string> = {};
  for (const role of policies.keys()) {
    const issued = await principals.issueApiKey(tenant.id, role, 'system', 'development credentials');
    apiKeys[role] = issued.secret.reveal();
  }
  await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  // Whole or not at all: a reader never sees half a file, and a crash here leaves none (the next start retries).
  await writeFileAtomically(file, `${JSON.stringify({ tenant: DEMO_TENANT, api_keys: apiKeys }, null, 2)}\n`);
  log.info({ file }, 'development credentials written (tenant demo, one API key per role)');
  return file;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
