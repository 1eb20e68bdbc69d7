// The vault behind a connection pooler, as the README advises for many pods: PgBouncer in session mode refuses
// startup parameters it does not track, so the vault's per-connection settings must travel as statements.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openPostgres } from '../../src/store/db';
import { adminQuery } from '../support/admin-db';
import { ensureBuilt } from '../support/build';
import { startEmbeddedVault, type EmbeddedVault } from '../support/embedded-vault';
import { postJson } from '../support/http';
import { newPan } from '../support/pans';
import { startPgBouncer, type RunningPgBouncer } from '../support/pgbouncer';

jest.setTimeout(120_000);

const database = `cardvault_pgbouncer_${randomBytes(5).toString('hex')}`;
let bouncer: RunningPgBouncer;
let dir: string;
let vault: EmbeddedVault | undefined;

beforeAll(async () => {
  await ensureBuilt();
  // Defaults an operator might have set, which the vault must override on each of its own connections.
  await adminQuery(`CREATE DATABASE ${database}`);
  await adminQuery(`ALTER DATABASE ${database} SET synchronous_commit = off`);
  await adminQuery(`ALTER DATABASE ${database} SET statement_timeout = '1h'`);
  bouncer = await startPgBouncer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-pgbouncer-vault-'));
});
afterAll(async () => {
  await vault?.stop('SIGTERM');
  await bouncer?.stop();
  await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

it('sets synchronous commits and the statement limit on each pooled connection, whatever the database default', async () => {
  const db = openPostgres({ url: bouncer.url(database), poolSize: 2, statementTimeoutMs: 7000 });
  try {
    // Two at once: each of the pool's connections is set, not only the first.
    const settings = () => db.transaction(async (tx) => tx.query<{ sync: string; limit: string }>("SELECT current_setting('synchronous_commit') AS sync, current_setting('statement_timeout') AS limit"));
    const both = await Promise.all([settings(), settings()]);
    expect(both.flat()).toEqual([
      { sync: 'on', limit: '7s' },
      { sync: 'on', limit: '7s' },
    ]);
  } finally {
    await db.close();
  }
  expect(bouncer.log()).not.toMatch(/unsupported startup parameter/);
});

it('migrates, starts and serves a tokenize and a detokenize through PgBouncer', async () => {
  vault = await startEmbeddedVault(dir, { DATABASE_URL: bouncer.url(database) });
  const card = { number: newPan(), exp_month: 12, exp_year: 2031 };
  const tokenized = await postJson(vault.baseUrl, '/v1/tokens', vault.apiKeys.merchant!, { card });
  expect(tokenized.status).toBe(201);
  const token = tokenized.body.token as string;
  const revealed = await postJson(vault.baseUrl, `/v1/tokens/${token}/detokenize`, vault.apiKeys.payments!, { purpose: 'authorization' });
  expect(revealed).toEqual({ status: 200, body: { token, card } });
  expect(bouncer.log()).not.toMatch(/unsupported startup parameter/);
});
