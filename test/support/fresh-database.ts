// A database of a test's own, migrated, for tests that must tamper with rows or count from zero.
import { randomBytes } from 'node:crypto';
import { openPostgres, type Db } from '../../src/store/db';
import { migrateUp } from '../../src/store/migrate';
import { adminQuery } from './admin-db';

export interface FreshDatabase {
  name: string;
  url: string;
  db: Db;
  drop(): Promise<void>;
}

export async function freshDatabase(prefix: string, poolSize = 10): Promise<FreshDatabase> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  const db = openPostgres({ url, poolSize });
  await migrateUp(db);
  return {
    name,
    url,
    db,
    async drop() {
      await db.close();
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}
