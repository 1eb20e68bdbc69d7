// A fresh migrated database and a login role that is only a member of cardvault_runtime, as production runs.
import { randomBytes } from 'node:crypto';
import { withAdmin } from './admin-db';
import { freshDatabase, type FreshDatabase } from './fresh-database';

export interface RuntimeRoleDatabase {
  fresh: FreshDatabase;
  /** Connects as the runtime role, not the owner that ran the migrations. */
  url: string;
  drop(): Promise<void>;
}

export async function databaseWithRuntimeRole(prefix: string): Promise<RuntimeRoleDatabase> {
  const fresh = await freshDatabase(prefix);
  const role = `${prefix}_app_${randomBytes(4).toString('hex')}`;
  await withAdmin((c) => c.query(`CREATE ROLE ${role} LOGIN IN ROLE cardvault_runtime`));
  return {
    fresh,
    url: `postgres://${role}@127.0.0.1:5432/${fresh.name}`,
    async drop() {
      await fresh.drop();
      await withAdmin((c) => c.query(`DROP ROLE IF EXISTS ${role}`));
    },
  };
}
