// Where the tests find the real services, and where a run leaves what the canary inspects.
import path from 'node:path';

export const ADMIN_DATABASE_URL = process.env.TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_DATABASE_NAME = process.env.TEST_DATABASE_NAME ?? 'cardvault_test';
export const TEST_DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${TEST_DATABASE_NAME}`;
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/**
 * Each test database has a run folder of its own: a second `jest` on another TEST_DATABASE_NAME (a parallel
 * checkout, a focused re-run) then neither wipes this run's logs and key files nor feeds its canary.
 */
export const RUN_DIR = path.resolve(__dirname, '..', '..', TEST_DATABASE_NAME === 'cardvault_test' ? '.test-run' : `.test-run-${TEST_DATABASE_NAME}`);
export const LOG_DIR = path.join(RUN_DIR, 'logs');
export const PAN_DIR = path.join(RUN_DIR, 'pans');
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
