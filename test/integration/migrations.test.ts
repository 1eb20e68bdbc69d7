// Every migration up and down on an empty PostgreSQL database, under concurrency, and on embedded PGlite.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { openPostgres, type Db, type Queryable } from '../../src/store/db';
import { MIGRATIONS_DIR, migrateDown, migrateUp, pendingMigrations } from '../../src/store/migrate';
import { StartupError } from '../../src/errors';
import { REPO_ROOT } from '../support/env';
import { ensureBuilt } from '../support/build';
import { adminQuery as admin } from '../support/admin-db';
import { waitFor } from '../support/wait-for';

jest.setTimeout(60_000);

const DATABASE = `cardvault_mig_${randomBytes(6).toString('hex')}`;
const DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;

/** Every migration in the folder, by the name migrate.ts gives it, in the order it applies them. */
const ALL = fs
  .readdirSync(MIGRATIONS_DIR)
  .filter((file) => file.endsWith('.sql') && !file.endsWith('.down.sql'))
  .map((file) => path.basename(file, '.sql'))
  .sort();

const TABLES_SQL = `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`;
const COLUMNS_SQL = `SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`;
/** Tables, indexes, sequences and views: a down file that forgets one leaves it here. */
const RELATIONS_SQL = `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S', 'v', 'm', 'p') ORDER BY c.relname`;

let db: Db;


async function tableNames(q: Queryable): Promise<string[]> {
  return (await q.query<{ table_name: string }>(TABLES_SQL)).map((row) => row.table_name);
}

async function relationNames(q: Queryable): Promise<string[]> {
  return (await q.query<{ relname: string }>(RELATIONS_SQL)).map((row) => row.relname);
}

beforeAll(async () => {
  await admin(`CREATE DATABASE ${DATABASE}`);
  db = openPostgres({ url: DATABASE_URL, poolSize: 2 });
});

afterAll(async () => {
  try {
    await db?.close();
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  }
});

describe('on PostgreSQL', () => {
  it('finds the migrations to test', () => {
    expect(ALL.length).toBeGreaterThanOrEqual(4);
    for (const name of ALL) expect(fs.existsSync(path.join(MIGRATIONS_DIR, `${name}.down.sql`))).toBe(true);
  });

  it('applies every migration up on an empty database and then has none pending', async () => {
    await migrateDown(db);
    expect(await tableNames(db)).toEqual(['schema_migrations']);

    expect(await migrateUp(db)).toEqual(ALL);
    expect(await pendingMigrations(db)).toEqual([]);
    expect(await tableNames(db)).toEqual([
      'api_keys', 'audit_checkpoints', 'audit_events', 'audit_head', 'card_updates', 'cards', 'client_sessions', 'data_keys',
      'encryption_keys', 'fingerprint_keys', 'idempotency_keys', 'key_rotations', 'schema_migrations', 'signing_keys', 'tenants',
      'updater_batches', 'updater_inquiries', 'updater_locks', 'updater_runs', 'updater_settings', 'webhook_endpoints', 'webhook_outbox',
    ]);
    const recorded = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
    expect(recorded.map((row) => row.name)).toEqual(ALL);
    expect(await migrateUp(db)).toEqual([]);
  });

  it('reverts every migration down, leaving nothing behind, and applies them all again', async () => {
    await migrateUp(db);
    expect(await migrateDown(db)).toEqual([...ALL].reverse());
    expect(await relationNames(db)).toEqual(['schema_migrations', 'schema_migrations_pkey']);
    expect(await pendingMigrations(db)).toEqual(ALL);

    expect(await migrateUp(db)).toEqual(ALL);
    expect(await pendingMigrations(db)).toEqual([]);
  });

  it('reverts one migration at a time, each down undoing exactly its up', async () => {
    await migrateDown(db);
    const before: string[][] = [];
    for (const name of ALL) {
      before.push(await relationNames(db));
      await db.transaction(async (tx) => {
        await tx.exec(fs.readFileSync(path.join(MIGRATIONS_DIR, `${name}.sql`), 'utf8'));
        await tx.exec(fs.readFileSync(path.join(MIGRATIONS_DIR, `${name}.down.sql`), 'utf8'));
        expect(await relationNames(tx)).toEqual(before[before.length - 1]);
        await tx.exec(fs.readFileSync(path.join(MIGRATIONS_DIR, `${name}.sql`), 'utf8'));
        await tx.query('INSERT INTO schema_migrations (name) VALUES ($1)', [name]);
      });
    }
    expect(await pendingMigrations(db)).toEqual([]);
  });

  it('keeps the migration named by `to` when reverting, as migrateDown documents', async () => {
    await migrateUp(db);
    try {
      const after = ALL.slice(ALL.indexOf('0002_data_keys') + 1);
      expect(await migrateDown(db, { to: '0002_data_keys' })).toEqual([...after].reverse());
      expect(await pendingMigrations(db)).toEqual(after);
      expect(await tableNames(db)).toContain('data_keys');
    } finally {
      await migrateUp(db);
    }
  });

  it('upgrades a database migrated before 71d95ae renamed two landed migrations, running neither again', async () => {
    await migrateUp(db);
    // As main left a database before 71d95ae: 0016_tenants_audited applied (its column), the append function as 0017.
    await db.exec(`ALTER TABLE tenants ADD COLUMN audited_at timestamptz;
      INSERT INTO schema_migrations (name) VALUES ('0016_tenants_audited');
      UPDATE schema_migrations SET name = '0017_audit_append_function' WHERE name = '0016_audit_append_function'`);

    expect(await migrateUp(db)).toEqual([]);
    const recorded = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
    expect(recorded.map((row) => row.name)).toEqual(ALL);
    const [tenants] = await db.query<{ audited_at: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'tenants' AND column_name = 'audited_at') AS audited_at",
    );
    expect(tenants!.audited_at).toBe(false);
    // And it reverts and re-applies like any other database.
    expect(await migrateDown(db, { steps: 1 })).toEqual([ALL[ALL.length - 1]]);
    expect(await migrateUp(db)).toEqual([ALL[ALL.length - 1]]);
  });

  it("waits for another migrator's lock past the pool's statement timeout and the lock timeout instead of failing", async () => {
    await migrateDown(db);
    // A pool whose statements may take 200 ms, while another session holds the migration lock for a second.
    const impatient = openPostgres({ url: DATABASE_URL, poolSize: 1, statementTimeoutMs: 200 });
    const holder = new Client({ connectionString: DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1)', [0x63617264]);
      const migrated = migrateUp(impatient, { lockTimeoutMs: 200 });
      migrated.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await holder.query('COMMIT');
      expect(await migrated).toEqual(ALL);
      // Outside the migration, the pool's limit still holds.
      await expect(impatient.query('SELECT pg_sleep(1)')).rejects.toMatchObject({ code: 'database_unavailable' });
    } finally {
      await holder.end();
      await impatient.close();
    }
  });

  it('gives up on a table lock a long transaction holds after MIGRATION_LOCK_TIMEOUT_MS, changing nothing, and names the migration', async () => {
    const lockDb = `${DATABASE}_lock`;
    const url = `postgres://postgres@127.0.0.1:5432/${lockDb}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-migrations-'));
    await admin(`CREATE DATABASE ${lockDb}`);
    const own = openPostgres({ url, poolSize: 2 });
    const holder = new Client({ connectionString: url });
    let release: NodeJS.Timeout | undefined;
    try {
      fs.writeFileSync(path.join(dir, '0001_hot.sql'), 'CREATE TABLE hot (id integer)');
      expect(await migrateUp(own, {}, dir)).toEqual(['0001_hot']);
      fs.writeFileSync(path.join(dir, '0002_hot_column.sql'), 'CREATE TABLE cold (id integer); ALTER TABLE hot ADD COLUMN note text');
      // A long transaction on the hot table (a report, a stuck client): ALTER TABLE must wait for it to end.
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM hot');
      // Ended anyway after 4 s, so a migration that waits for it does not hang the test: it succeeds, and fails it.
      release = setTimeout(() => void holder.query('COMMIT').catch(() => undefined), 4000);
      const started = Date.now();
      const failed = await migrateUp(own, { lockTimeoutMs: 300 }, dir).then(() => undefined, (err: unknown) => err as Error);
      expect(failed).toBeInstanceOf(StartupError);
      expect(failed!.message).toMatch(/^migration 0002_hot_column waited more than 300 ms \(MIGRATION_LOCK_TIMEOUT_MS\) for a lock/);
      expect(Date.now() - started).toBeLessThan(3000);
      // Nothing of it was applied, not even the statement before the one that waited.
      expect(await pendingMigrations(own, dir)).toEqual(['0002_hot_column']);
      expect(await tableNames(own)).not.toContain('cold');

      clearTimeout(release);
      await holder.query('COMMIT');
      expect(await migrateUp(own, { lockTimeoutMs: 300 }, dir)).toEqual(['0002_hot_column']);
    } finally {
      clearTimeout(release);
      await holder.end().catch(() => undefined);
      await own.close();
      await admin(`DROP DATABASE IF EXISTS ${lockDb} WITH (FORCE)`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('applies each migration exactly once when two pools migrate at the same time', async () => {
    await migrateDown(db);
    const a = openPostgres({ url: DATABASE_URL, poolSize: 1, applicationName: 'cardvault-migrate-a' });
    const b = openPostgres({ url: DATABASE_URL, poolSize: 1, applicationName: 'cardvault-migrate-b' });
    // A third session holds schema_migrations until both migrators are blocked, so they truly overlap.
    const holder = new Client({ connectionString: DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
      const both = Promise.all([migrateUp(a), migrateUp(b)]);
      both.catch(() => undefined);
      try {
        await waitFor(async () => {
          const rows = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE application_name IN ('cardvault-migrate-a', 'cardvault-migrate-b') AND wait_event_type = 'Lock'`,
          );
          return rows[0]!.n === 2;
        });
      } finally {
        await holder.query('COMMIT');
      }
      const [fromA, fromB] = await both;
      // One of them waited on the advisory lock and then found nothing left to do.
      expect([fromA, fromB].sort((x, y) => x.length - y.length)).toEqual([[], ALL]);
      const recorded = await db.query<{ name: string; n: number }>('SELECT name, count(*)::int AS n FROM schema_migrations GROUP BY name ORDER BY name');
      expect(recorded).toEqual(ALL.map((name) => ({ name, n: 1 })));
      expect(await pendingMigrations(db)).toEqual([]);
    } finally {
      await holder.end();
      await Promise.all([a.close(), b.close()]);
    }
  });
});


describe('on embedded PGlite', () => {
  let dataDir: string;

  // PGlite runs in a child process on the compiled code: its bundle calls import(), which jest's VM refuses
  // without --experimental-vm-modules.
  beforeAll(async () => {
    await ensureBuilt();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-mig-pglite-'));
  }, 180_000);

  afterAll(() => {
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('applies, reverts and re-applies the same migrations, yielding the same tables and columns as PostgreSQL', async () => {
    const embedded = await runOnPglite(dataDir);
    expect(embedded.applied).toEqual(ALL);
    expect(embedded.pending).toEqual([]);
    expect(embedded.reverted).toEqual([...ALL].reverse());
    expect(embedded.tablesAfterDown).toEqual(['schema_migrations']);
    expect(embedded.reapplied).toEqual(ALL);

    await migrateUp(db);
    expect(embedded.tables).toEqual(await tableNames(db));
    expect(embedded.columns).toEqual(await db.query(COLUMNS_SQL));
  });
});

interface PgliteRun {
  applied: string[];
  pending: string[];
  tables: string[];
  columns: unknown[];
  reverted: string[];
  tablesAfterDown: string[];
  reapplied: string[];
}

/** openEmbedded and the migrations from dist/, in a child node process; returns what it saw as JSON. */
function runOnPglite(dataDir: string): Promise<PgliteRun> {
  const script = `
    const { openEmbedded } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'store', 'db.js'))});
    const { migrateUp, migrateDown, pendingMigrations } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'store', 'migrate.js'))});
    (async () => {
      const db = await openEmbedded({ dataDir: ${JSON.stringify(dataDir)} });
      try {
        const names = async () => (await db.query(${JSON.stringify(TABLES_SQL)})).map((r) => r.table_name);
        const out = {};
        out.applied = await migrateUp(db);
        out.pending = await pendingMigrations(db);
        out.tables = await names();
        out.columns = await db.query(${JSON.stringify(COLUMNS_SQL)});
        out.reverted = await migrateDown(db);
        out.tablesAfterDown = await names();
        out.reapplied = await migrateUp(db);
        process.stdout.write(JSON.stringify(out));
      } finally {
        await db.close();
      }
    })().catch((err) => { process.stderr.write(String(err && err.stack || err)); process.exitCode = 1; });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`the PGlite migration run failed (${code ?? signal}):\n${stderr}`));
      resolve(JSON.parse(stdout) as PgliteRun);
    });
  });
}
