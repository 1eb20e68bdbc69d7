// Startup refusals: production without production settings, a bad policy file, a database with pending migrations.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import request from 'supertest';
import { ConfigError, loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { startVault, type RunningVault } from '../../src/main';
import { openPostgres } from '../../src/store/db';
import { migrateUp } from '../../src/store/migrate';
import { REPO_ROOT } from '../support/env';
import { runCompiledToExit } from '../support/compiled';
import { runCli } from '../support/cli';
import { cardBody } from '../support/http';
import { newPan } from '../support/pans';
import { waitFor } from '../support/wait-for';
import { captureLog } from '../support/log-capture';
import { ensureBuilt } from '../support/build';
import { withAdmin as admin } from '../support/admin-db';

jest.setTimeout(60_000);


let tmpDir: string;
const databases: string[] = [];
const roles: string[] = [];

beforeAll(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-startup-'));
  await ensureBuilt();
}, 180_000);

afterAll(async () => {
  try {
    await admin(async (client) => {
      for (const name of databases) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      for (const name of roles) await client.query(`DROP ROLE IF EXISTS ${name}`);
    });
  } finally {
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
});


/** An empty database of its own, dropped in afterAll. */
async function freshDatabase(): Promise<{ name: string; url: string }> {
  const name = `cardvault_startup_${randomBytes(6).toString('hex')}`;
  databases.push(name);
  await admin((client) => client.query(`CREATE DATABASE ${name}`));
  return { name, url: `postgres://postgres@127.0.0.1:5432/${name}` };
}

function scratchDir(): string {
  return fs.mkdtempSync(path.join(tmpDir, 'case-'));
}

/** Runs the compiled server with exactly `env`; it must exit by itself. */
const runCompiledServer = (env: Record<string, string>, cwd: string) => runCompiledToExit(['main.js'], env, cwd);

describe('loadConfig in production', () => {
  it('rejects the embedded database and the local KMS, naming DATABASE_URL and KMS_PROVIDER', () => {
    let thrown: unknown;
    try {
      loadConfig({ NODE_ENV: 'production' }, tmpDir);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const problems = (thrown as ConfigError).problems;
    expect(problems.some((p) => p.includes('DATABASE_URL'))).toBe(true);
    expect(problems.some((p) => p.includes('KMS_PROVIDER'))).toBe(true);
  });

  it('still rejects the local KMS when DATABASE_URL is set', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://vault@db/vault' }, tmpDir)).toThrow(/KMS_PROVIDER/);
  });
});

describe('the compiled server', () => {
  it('refuses to start in production without production settings, naming them on stderr', async () => {
    const cwd = scratchDir();
    const result = await runCompiledServer({ NODE_ENV: 'production', PORT: '0' }, cwd);
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toContain('DATABASE_URL');
    expect(result.stderr).toContain('KMS_PROVIDER');
    expect(result.stdout).not.toContain('listening');
    // It stopped before creating anything: no embedded database, no key file.
    expect(fs.existsSync(path.join(cwd, '.vault'))).toBe(false);
  });

  it.each([
    ['an action that does not exist', 'merchant.yaml', 'role: merchant\nactions: [tokenize, teleport]\n', 'field /actions/1'],
    ['a misspelt field', 'merchant.yaml', 'role: merchant\nactoins: [tokenize]\nactions: [tokenize]\n', '(actoins)'],
    ['a detokenize grant without purposes', 'payments.yaml', 'role: payments\nactions: [detokenize]\ndetokenize:\n  reveal: [number]\n', "field /detokenize: must have required property 'purposes'"],
  ])('exits before listening when a policy file has %s, naming the file and the field', async (_case, fileName, yaml, field) => {
    const cwd = scratchDir();
    const policiesDir = path.join(cwd, 'policies');
    fs.cpSync(path.join(REPO_ROOT, 'policies'), policiesDir, { recursive: true });
    fs.writeFileSync(path.join(policiesDir, fileName), yaml);

    const result = await runCompiledServer({ POLICIES_DIR: policiesDir, PORT: '0', HOST: '127.0.0.1' }, cwd);
    const output = result.stdout + result.stderr;
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(output).toContain(path.join(policiesDir, fileName));
    expect(output).toContain(field);
    expect(output).not.toContain('listening');
  });
});

describe('MIGRATE_ON_START=false', () => {
  const config = (url: string, dir: string) =>
    loadConfig({ DATABASE_URL: url, MIGRATE_ON_START: 'false', PORT: '0', HOST: '127.0.0.1', VAULT_DATA_DIR: path.join(dir, '.vault') }, dir);

  it('refuses to start on a database with pending migrations, naming `cardvault migrate`', async () => {
    const { url } = await freshDatabase();
    const dir = scratchDir();
    const log = createLogger({ level: 'info', destination: captureLog() });
    await expect(startVault(config(url, dir), log)).rejects.toThrow(/cardvault migrate/);
    await expect(startVault(config(url, dir), log)).rejects.toThrow(/0001_tenants/);
  });

  // That it applies nothing itself is the test above: with pending migrations it refuses instead of applying them.
  it('starts and is ready once the database is migrated', async () => {
    const { url } = await freshDatabase();
    const db = openPostgres({ url, poolSize: 1 });
    try {
      await migrateUp(db);
    } finally {
      await db.close();
    }
    const dir = scratchDir();
    const captured = captureLog();
    const vault = await startVault(config(url, dir), createLogger({ level: 'info', destination: captured }));
    try {
      const { port } = vault.server.address() as AddressInfo;
      expect((await request(`http://127.0.0.1:${port}`).get('/readyz')).status).toBe(200);
    } finally {
      await vault.stop();
    }
  });

  it('re-keys, as it starts, the Idempotency-Keys a previous release stored in plaintext; their retries replay', async () => {
    const { url } = await freshDatabase();
    const db = openPostgres({ url, poolSize: 1 });
    const dir = scratchDir();
    const env = { DATABASE_URL: url, MIGRATE_ON_START: 'false', VAULT_DATA_DIR: path.join(dir, '.vault') };
    try {
      await migrateUp(db);
      const tenant = JSON.parse((await runCli(['tenants', 'create', 'upgraded'], env)).out[0]!) as { id: string };
      const apiKey = (JSON.parse((await runCli(['keys', 'create', '--tenant', 'upgraded', '--role', 'merchant'], env)).out[0]!) as { api_key: string }).api_key;
      const tokenize = async (vault: RunningVault, pan: string) => {
        const { port } = vault.server.address() as AddressInfo;
        return request(`http://127.0.0.1:${port}`).post('/v1/tokens').set('Authorization', `Bearer ${apiKey}`).set('Idempotency-Key', 'order-77').send(cardBody(pan));
      };
      const pan = newPan();
      const before = await startVault(config(url, dir), createLogger({ level: 'info', destination: captureLog() }));
      const first = await tokenize(before, pan);
      await before.stop();
      expect(first.status).toBe(201);
      // As the previous release left it: the same record, under the key as sent.
      expect((await db.query("UPDATE idempotency_keys SET key = 'order-77', key_digest_odd = NULL, key_digest_even = NULL WHERE tenant_id = $1 RETURNING 1", [tenant.id])).length).toBe(1);

      const captured = captureLog();
      const after = await startVault(config(url, dir), createLogger({ level: 'info', destination: captured }));
      try {
        // The line is logged once the re-keying has committed: wait for it, then look at the rows.
        await waitFor(async () => captured.lines.join('').includes('"digested":1'));
        expect(await db.query('SELECT 1 FROM idempotency_keys WHERE key IS NOT NULL')).toEqual([]);
        const replay = await tokenize(after, pan);
        expect(replay.status).toBe(201);
        expect(replay.body).toEqual(first.body);
        expect((await tokenize(after, newPan())).body.code).toBe('idempotency_key_reused');
      } finally {
        await after.stop();
      }
    } finally {
      await db.close();
    }
  });

  it('starts as a least-privileged database user that may read and write rows but not create tables', async () => {
    const { name, url } = await freshDatabase();
    const db = openPostgres({ url, poolSize: 1 });
    try {
      await migrateUp(db);
    } finally {
      await db.close();
    }
    // PCI least privilege: the migration job owns the schema; the vault's own user only reads and writes rows.
    const role = `cardvault_startup_app_${randomBytes(6).toString('hex')}`;
    roles.push(role);
    await admin((client) => client.query(`CREATE ROLE ${role} LOGIN`));
    const owner = new Client({ connectionString: url });
    await owner.connect();
    try {
      await owner.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
      await owner.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
      await owner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
      await owner.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
    } finally {
      await owner.end();
    }

    const dir = scratchDir();
    const appUrl = `postgres://${role}@127.0.0.1:5432/${name}`;
    const { stop } = await startVault(config(appUrl, dir), createLogger({ level: 'info', destination: captureLog() }));
    await stop();
  });
});
