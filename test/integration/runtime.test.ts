import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { openRuntime, type Runtime } from '../../src/dependencies';
import { createLogger } from '../../src/log';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/env';
import { adminQuery } from '../support/admin-db';
import { freshDatabase } from '../support/fresh-database';
import { captureLog } from '../support/log-capture';

let dir: string;
const opened: Runtime[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-runtime-'));
});
afterAll(async () => {
  for (const runtime of opened) await runtime.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runtimeWith(redisUrl: string, databaseUrl = TEST_DATABASE_URL): Promise<Runtime> {
  const config = loadConfig({ DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, DATABASE_POOL_SIZE: '2' }, dir);
  const runtime = await openRuntime(config, createLogger({ level: 'info', destination: captureLog() }));
  opened.push(runtime);
  return runtime;
}

it('uses the real PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set', async () => {
  const runtime = await runtimeWith(TEST_REDIS_URL);
  expect(runtime.db.kind).toBe('postgres');
  await expect(runtime.readiness()).resolves.toEqual({ ready: true, checks: { database: 'ok', redis: 'ok' } });
});

it('stays ready, reporting Redis degraded, when Redis is unreachable', async () => {
  const runtime = await runtimeWith('redis://127.0.0.1:1');
  await expect(runtime.readiness()).resolves.toEqual({ ready: true, checks: { database: 'ok', redis: 'degraded' } });
});

it('commits card writes and the audit log synchronously, whatever the database or role defaults to', async () => {
  // A crash between an asynchronous card commit and its audit commit would lose a card already acknowledged.
  const fresh = await freshDatabase('cardvault_synccommit', 1);
  try {
    await adminQuery(`ALTER DATABASE ${fresh.name} SET synchronous_commit = off`);
    const runtime = await runtimeWith(TEST_REDIS_URL, fresh.url);
    const setting = async (db: Runtime['db']) => (await db.query<{ synchronous_commit: string }>('SHOW synchronous_commit'))[0]!.synchronous_commit;
    expect(await setting(runtime.cardDb)).toBe('on');
    expect(await setting(runtime.db)).toBe('on');
    await runtime.close();
    opened.splice(opened.indexOf(runtime), 1);
  } finally {
    await fresh.drop();
  }
});
