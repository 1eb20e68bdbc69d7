// Applies the SQL files in migrations/ with umzug, in one transaction under an advisory lock so instances can race.
import fs from 'node:fs/promises';
import path from 'node:path';
import { MigrationError, Umzug, type UmzugStorage } from 'umzug';
import { StartupError } from '../errors';
import type { Db, Queryable } from './db';

export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');
const LOCK_ID = 0x63617264; // "card"

/** MIGRATION_LOCK_TIMEOUT_MS's default (config.ts): what a caller that does not say gets. */
export const DEFAULT_MIGRATION_LOCK_TIMEOUT_MS = 5000;

export interface MigrateOptions {
  /**
   * How long a migration's statement may wait for a lock on a table (or row) before the whole run fails and
   * rolls back; 0 waits for ever. Not the wait for the migration lock itself: another instance migrating.
   */
  lockTimeoutMs?: number;
}

function storage(tx: Queryable): UmzugStorage {
  return {
    async executed() {
      const rows = await tx.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
      return rows.map((row) => row.name);
    },
    async logMigration({ name }) {
      await tx.query('INSERT INTO schema_migrations (name) VALUES ($1)', [name]);
    },
    async unlogMigration({ name }) {
      await tx.query('DELETE FROM schema_migrations WHERE name = $1', [name]);
    },
  };
}

function migrator(tx: Queryable, dir: string): Umzug<Queryable> {
  return new Umzug<Queryable>({
    migrations: {
      glob: ['*.sql', { cwd: dir, ignore: ['*.down.sql'] }],
      resolve: ({ name, path: file }) => ({
        name: path.basename(name, '.sql'),
        up: async () => tx.exec(await fs.readFile(file!, 'utf8')),
        down: async () => tx.exec(await fs.readFile(file!.replace(/\.sql$/, '.down.sql'), 'utf8')),
      }),
    },
    context: tx,
    storage: storage(tx),
    logger: undefined,
  });
}

/**
 * 71d95ae rewrote two migrations that had already landed: it dropped 0016_tenants_audited (tenants.audited_at, no
 * longer read) and renumbered 0017_audit_append_function to 0016. A database migrated before then records the old
 * names, and would fail creating audit_append a second time; this brings it to today's schema and names, in the
 * migration's own transaction, and does nothing on any other database. A landed migration is never renamed again.
 */
const RENAMED_IN_71D95AE = `DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM schema_migrations WHERE name = '0016_tenants_audited') THEN
    ALTER TABLE tenants DROP COLUMN IF EXISTS audited_at;
    DELETE FROM schema_migrations WHERE name = '0016_tenants_audited';
  END IF;
  UPDATE schema_migrations SET name = '0016_audit_append_function' WHERE name = '0017_audit_append_function';
END
$$`;

/** PostgreSQL's lock_not_available: a statement gave up waiting for a lock after lock_timeout. */
const isLockTimeout = (err: unknown) => (err as { code?: unknown } | null)?.code === '55P03';

async function locked<T>(db: Db, { lockTimeoutMs = DEFAULT_MIGRATION_LOCK_TIMEOUT_MS }: MigrateOptions, work: (tx: Queryable) => Promise<T>): Promise<T> {
  if (!(Number.isSafeInteger(lockTimeoutMs) && lockTimeoutMs >= 0)) throw new RangeError('lockTimeoutMs must be a whole number of ms, 0 or more');
  // No statement limit, not the pool's 10 s request limit: another pod may hold the lock while it migrates, and
  // an index build on a large cards table may take minutes. Only this transaction is exempt.
  try {
    return await db.transaction(
      async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
        // Set once the migration lock is held, so waiting for another instance's run is not limited by it. A
        // statement queued behind a long transaction for a table's lock queues every request for that table
        // behind itself: better to fail, and let the operator (or the pod's restart) try again.
        await tx.exec(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
        await tx.exec('CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
        await tx.exec(RENAMED_IN_71D95AE);
        return work(tx);
      },
      { statementTimeoutMs: 0 },
    );
  } catch (err) {
    const cause = err instanceof MigrationError ? err.cause : err;
    if (!isLockTimeout(cause)) throw err;
    const which = err instanceof MigrationError ? `migration ${err.migration.name}` : 'the migration run';
    throw new StartupError(
      `${which} waited more than ${lockTimeoutMs} ms (MIGRATION_LOCK_TIMEOUT_MS) for a lock another transaction holds, ` +
        'and gave up rather than hold up every request behind it: nothing was changed. Find the blocking transaction ' +
        '(pg_stat_activity, pg_blocking_pids) or wait for it to end, then migrate again',
    );
  }
}

/** Applies every pending migration; returns the names applied. */
export async function migrateUp(db: Db, options: MigrateOptions = {}, dir = MIGRATIONS_DIR): Promise<string[]> {
  return locked(db, options, async (tx) => (await migrator(tx, dir).up()).map((m) => m.name));
}

/**
 * Reverts migrations: those applied after `to` (which is kept), or the last `steps`, or all of them.
 * umzug's own `to` is inclusive; translating it to a step count keeps the named migration in place.
 */
export async function migrateDown(db: Db, options: { to?: string; steps?: number } & MigrateOptions = {}, dir = MIGRATIONS_DIR): Promise<string[]> {
  return locked(db, options, async (tx) => {
    const umzug = migrator(tx, dir);
    let steps = options.steps;
    if (options.to !== undefined) {
      const executed = (await umzug.executed()).map((m) => m.name);
      const index = executed.indexOf(options.to);
      if (index < 0) throw new Error(`migration ${options.to} has not been applied`);
      steps = executed.length - index - 1;
    }
    if (steps === 0) return [];
    const reverted = await umzug.down(steps === undefined ? { to: 0 } : { step: steps });
    return reverted.map((m) => m.name);
  });
}

/** Read-only: the runtime role of a production vault may lack CREATE, and must still be able to check. */
export async function pendingMigrations(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const [row] = await db.query<{ present: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  const applied = new Set(
    row?.present ? (await db.query<{ name: string }>('SELECT name FROM schema_migrations')).map((r) => r.name) : [],
  );
  const files = (await fs.readdir(dir)).filter((name) => name.endsWith('.sql') && !name.endsWith('.down.sql')).sort();
  return files.map((name) => path.basename(name, '.sql')).filter((name) => !applied.has(name));
}
