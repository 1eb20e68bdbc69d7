import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { openRuntime, type Runtime } from '../../src/dependencies';
import { createLogger } from '../../src/log';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/env';
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

async function runtimeWith(redisUrl: string): Promise<Runtime> {
  const config = loadConfig({ DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: redisUrl, DATABASE_POOL_SIZE: '2' }, dir);
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

it('commits card writes asynchronously and the audit log synchronously, so one fsync covers both', async () => {
  const runtime = await runtimeWith(TEST_REDIS_URL);
  const setting = async (db: Runtime['db']) => (await db.query<{ synchronous_commit: string }>('SHOW synchronous_commit'))[0]!.synchronous_commit;
  expect(await setting(runtime.cardDb)).toBe('off');
  expect(await setting(runtime.db)).toBe('on');
});
