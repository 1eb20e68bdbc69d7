// Once per run: a fresh test database with every migration applied, and an empty run folder for the canary.
import fs from 'node:fs';
import { Client } from 'pg';
import { openPostgres } from '../../src/store/db';
import { migrateUp } from '../../src/store/migrate';
import { ADMIN_DATABASE_URL, LOG_DIR, PAN_DIR, RUN_DIR, TEST_DATABASE_NAME, TEST_DATABASE_URL } from './env';

export default async function globalSetup(): Promise<void> {
  fs.rmSync(RUN_DIR, { recursive: true, force: true });
  fs.mkdirSync(LOG_DIR, { recursive: true });
  fs.mkdirSync(PAN_DIR, { recursive: true });

  const admin = new Client({ connectionString: ADMIN_DATABASE_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${ADMIN_DATABASE_URL}: start it (see README) — ${(err as Error).message}`);
  }
  await admin.query(`DROP DATABASE IF EXISTS ${TEST_DATABASE_NAME} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEST_DATABASE_NAME}`);
  await admin.end();

  const db = openPostgres({ url: TEST_DATABASE_URL, poolSize: 2 });
  await migrateUp(db);
  await db.close();
}
