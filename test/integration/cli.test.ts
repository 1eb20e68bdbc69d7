// The `cardvault` operator command through run(), on a fresh database, and once as the compiled bin/ script.
// Each test makes what it needs (its tenant, its keys), so any one of them can run alone (jest -t).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KeyRotator, RewrapIncompleteError } from '../../src/crypto/key-rotation';
import { openLocalKms } from '../../src/crypto/local-kms';
import { assembleVault } from '../../src/dependencies';
import { isVaultError } from '../../src/errors';
import { loadPolicies } from '../../src/policy/load-policies';
import { openPostgres, type Db } from '../../src/store/db';
import { MIGRATIONS_DIR, migrateUp } from '../../src/store/migrate';
import { REPO_ROOT } from '../support/env';
import { ensureBuilt } from '../support/build';
import { outcome, runCli } from '../support/cli';
import { adminQuery as admin } from '../support/admin-db';
import packageJson from '../../package.json';
import { createLogger } from '../../src/log';

jest.setTimeout(60_000);

const suffix = randomBytes(6).toString('hex');
const DATABASE = `cardvault_cli_${suffix}`;
/** Empty until `cardvault migrate` runs on it; DATABASE is migrated before any test. */
const MIGRATE_DATABASE = `cardvault_cli_migrate_${suffix}`;
const BIN_DATABASE = `cardvault_cli_bin_${suffix}`;
const urlOf = (name: string) => `postgres://postgres@127.0.0.1:5432/${name}`;

const ALL = fs
  .readdirSync(MIGRATIONS_DIR)
  .filter((file) => file.endsWith('.sql') && !file.endsWith('.down.sql'))
  .map((file) => path.basename(file, '.sql'))
  .sort();

let tmpDir: string;
let env: Record<string, string>;
let db: Db;


const cardvault = (...argv: string[]) => runCli(argv, env);

const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-cli-'));
  env = {
    DATABASE_URL: urlOf(DATABASE),
    VAULT_DATA_DIR: path.join(tmpDir, '.vault'),
    KMS_PROVIDER: 'local',
    LOCAL_KMS_KEY_FILE: path.join(tmpDir, 'kms', 'local-kms.key'),
  };
  await admin(`CREATE DATABASE ${DATABASE}`);
  db = openPostgres({ url: urlOf(DATABASE), poolSize: 2 });
  await migrateUp(db);
});

afterAll(async () => {
  try {
    await db?.close();
    await admin(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin(`DROP DATABASE IF EXISTS ${MIGRATE_DATABASE} WITH (FORCE)`);
    await admin(`DROP DATABASE IF EXISTS ${BIN_DATABASE} WITH (FORCE)`);
  } finally {
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
});

describe('cardvault migrate', () => {
  it('applies every migration to an empty database and prints their names', async () => {
    await admin(`CREATE DATABASE ${MIGRATE_DATABASE}`);
    const migrate = () => runCli(['migrate'], { ...env, DATABASE_URL: urlOf(MIGRATE_DATABASE) });
    const result = await migrate();
    expect(outcome(result)).toEqual({ code: 0 });
    expect(result.out.map((line) => JSON.parse(line))).toEqual([{ applied: ALL }]);
    expect(await migrate()).toMatchObject({ code: 0, out: [JSON.stringify({ applied: [] })] });
  });
});

describe('cardvault worker', () => {
  it('refuses a database with pending migrations, naming the command that applies them', async () => {
    await admin(`DROP DATABASE IF EXISTS ${MIGRATE_DATABASE} WITH (FORCE)`);
    await admin(`CREATE DATABASE ${MIGRATE_DATABASE}`);
    const result = await runCli(['worker'], { ...env, DATABASE_URL: urlOf(MIGRATE_DATABASE), MIGRATE_ON_START: 'false' });
    expect(result.code).toBe(1);
    expect(result.err).toContain('pending migrations');
    expect(result.err).toContain('run `cardvault migrate`');
  });
});

describe('cardvault tenants and keys', () => {
  /** The principals as the server builds them, on the same database and KMS key, with no key cache. */
  async function principals() {
    const kms = await openLocalKms({ keyFile: env.LOCAL_KMS_KEY_FILE! });
    return assembleVault({
      db,
      kms,
      policies: loadPolicies(path.join(REPO_ROOT, 'policies')),
      log: createLogger({ level: 'silent' }),
      config: {
        apiKeyCacheSeconds: 0,
        idempotencyTtlSeconds: 24 * 3600,
        dataKeys: { maxAgeSeconds: 3600, maxUses: 1000, cacheEntries: 10 },
        audit: { origin: 'cardvault-cli-test', checkpointMaxEvents: 10_000, checkpointMaxAgeSeconds: 60 },
      },
    }).principals;
  }

  async function createTenant(name: string): Promise<string> {
    const result = await cardvault('tenants', 'create', name);
    expect(outcome(result)).toEqual({ code: 0 });
    return (JSON.parse(result.out[0]!) as { id: string }).id;
  }

  it('tenants create acme prints the new tenant id', async () => {
    const result = await cardvault('tenants', 'create', 'acme');
    expect(outcome(result)).toEqual({ code: 0 });
    expect(result.out).toHaveLength(1);
    const printed = JSON.parse(result.out[0]!) as { id: string; name: string };
    expect(printed.name).toBe('acme');
    expect(printed.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const rows = await db.query<{ name: string }>('SELECT name FROM tenants WHERE id = $1', [printed.id]);
    expect(rows).toEqual([{ name: 'acme' }]);
  });

  it('fails with a non-zero exit when the tenant name is taken', async () => {
    const name = uniqueName('dup');
    await createTenant(name);
    const again = await cardvault('tenants', 'create', name);
    expect(again.code).not.toBe(0);
    expect(again.out).toEqual([]);
    expect(again.err).toContain('tenant_exists');
    const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants WHERE name = $1', [name]);
    expect(rows[0]!.n).toBe(1);
  });

  it('keys create prints a cvk_ key once and the database keeps only its SHA-256', async () => {
    const name = uniqueName('keys');
    const tenantId = await createTenant(name);
    const result = await cardvault('keys', 'create', '--tenant', name, '--role', 'merchant', '--label', 'checkout');
    expect(outcome(result)).toEqual({ code: 0 });
    expect(result.out).toHaveLength(1);
    const printed = JSON.parse(result.out[0]!) as { id: string; tenant: string; role: string; api_key: string };
    expect(printed).toMatchObject({ tenant: name, role: 'merchant' });
    const secret = printed.api_key;
    expect(secret).toMatch(/^cvk_[A-Za-z0-9_-]{43}$/);
    expect(result.out.join('\n').split(secret)).toHaveLength(2);
    expect(result.err).not.toContain(secret);

    const rows = await db.query<{ id: string; role: string; key_hash: Buffer }>('SELECT id, role, key_hash FROM api_keys WHERE tenant_id = $1', [tenantId]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.id).toBe(printed.id);
    expect(rows[0]!.key_hash.equals(createHash('sha256').update(secret, 'utf8').digest())).toBe(true);
    const dump = (await db.query<{ row: string }>('SELECT a::text AS row FROM api_keys a')).map((r) => r.row).join('\n');
    expect(dump).not.toContain(secret.slice('cvk_'.length));
    expect(dump).not.toContain(Buffer.from(secret).toString('hex'));

    const listed = await cardvault('keys', 'list', '--tenant', name);
    expect(outcome(listed)).toEqual({ code: 0 });
    expect(listed.out.map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ id: printed.id, role: 'merchant', label: 'checkout', revoked_at: null })]);
    expect(listed.out.join('\n')).not.toContain(secret.slice('cvk_'.length));
  });

  it('a created key authenticates as its tenant and role until keys revoke, then never again', async () => {
    const name = uniqueName('revoke');
    const tenantId = await createTenant(name);
    const created = JSON.parse((await cardvault('keys', 'create', '--tenant', name, '--role', 'merchant')).out[0]!) as { id: string; api_key: string };
    const vault = await principals();

    const principal = await vault.authenticate(created.api_key);
    expect(principal.tenant).toMatchObject({ id: tenantId, name });
    expect(principal.role.name).toBe('merchant');
    expect(principal.apiKeyId).toBe(created.id);

    const revoked = await cardvault('keys', 'revoke', created.id);
    expect(outcome(revoked)).toEqual({ code: 0 });
    expect(revoked.out.map((line) => JSON.parse(line))).toEqual([{ id: created.id, revoked: true }]);
    const rejected = await vault.authenticate(created.api_key).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isVaultError(rejected, 'unauthenticated')).toBe(true);

    const twice = await cardvault('keys', 'revoke', created.id);
    expect(twice.code).not.toBe(0);
    expect(twice.out.map((line) => JSON.parse(line))).toEqual([{ id: created.id, revoked: false }]);
  });

  it('keys create with a role missing from policies/ fails naming the role and issues nothing', async () => {
    const name = uniqueName('role');
    const tenantId = await createTenant(name);
    const result = await cardvault('keys', 'create', '--tenant', name, '--role', 'superuser');
    expect(result.code).not.toBe(0);
    expect(result.out).toEqual([]);
    expect(result.err).toMatch(/role/);
    expect(result.err).not.toMatch(/cvk_/);
    const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1', [tenantId]);
    expect(rows[0]!.n).toBe(0);
  });

  it('keys create for a tenant that does not exist fails and issues nothing', async () => {
    const result = await cardvault('keys', 'create', '--tenant', uniqueName('ghost'), '--role', 'merchant');
    expect(result.code).not.toBe(0);
    expect(result.out).toEqual([]);
    expect(result.err).toContain('no tenant named');
  });
});

describe('the operator in audit events', () => {
  /** The details of the tenant's audit events with this action, recorded by principal cli. */
  async function cliDetails(tenantId: string, action: string): Promise<Array<Record<string, unknown>>> {
    const rows = await db.query<{ event: string }>(
      "SELECT event FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = $2 AND event::jsonb ->> 'principal' = 'cli' ORDER BY seq",
      [tenantId, action],
    );
    return rows.map((row) => (JSON.parse(row.event) as { details: Record<string, unknown> }).details);
  }

  const idOf = (result: { out: string[] }) => (JSON.parse(result.out[0]!) as { id: string }).id;

  it('names --operator beside principal cli when a tenant is created and a key issued and revoked', async () => {
    const name = uniqueName('operator');
    const created = await cardvault('tenants', 'create', name, '--operator', 'alice.smith');
    expect(outcome(created)).toEqual({ code: 0 });
    const tenantId = idOf(created);
    expect(await cliDetails(tenantId, 'tenant.create')).toEqual([{ name, operator: 'alice.smith' }]);

    const issued = await cardvault('keys', 'create', '--tenant', name, '--role', 'merchant', '--operator', 'bob');
    expect(outcome(issued)).toEqual({ code: 0 });
    expect(await cliDetails(tenantId, 'api_key.create')).toEqual([{ api_key_id: idOf(issued), role: 'merchant', operator: 'bob' }]);

    expect(outcome(await cardvault('keys', 'revoke', idOf(issued), '--operator', 'carol'))).toEqual({ code: 0 });
    expect(await cliDetails(tenantId, 'api_key.revoke')).toEqual([{ api_key_id: idOf(issued), operator: 'carol' }]);
  });

  it('names --operator in the start of an account-updater run', async () => {
    const name = uniqueName('run-operator');
    const created = await cardvault('tenants', 'create', name);
    expect(outcome(created)).toEqual({ code: 0 });
    // No networks are configured, so the run fails at once (exit 1), after its start has been audited.
    const run = await cardvault('updater', 'run', '--tenant', name, '--scope', 'all', '--operator', 'dora');
    expect(outcome(run, 1)).toEqual({ code: 1 });
    expect(JSON.parse(run.out[0]!)).toMatchObject({ state: 'failed', failure: 'updater_not_configured' });
    expect(await cliDetails(idOf(created), 'updater.run.start')).toEqual([{ run_id: idOf(run), trigger: 'cli', scope: 'all', operator: 'dora' }]);
  });

  it('names --operator in every event of keys rotate', async () => {
    const rotated = await cardvault('keys', 'rotate', '--operator', 'erin');
    expect(outcome(rotated)).toEqual({ code: 0 });
    const { generation } = JSON.parse(rotated.out[0]!) as { generation: number };
    const rows = await db.query<{ event: string }>(
      `SELECT event FROM audit_events WHERE event::jsonb ->> 'action' LIKE 'key.rotation.%'
       AND (event::jsonb -> 'details' ->> 'generation')::int = $1 ORDER BY seq`,
      [generation],
    );
    const events = rows.map((row) => JSON.parse(row.event) as { action: string; principal: string; details: Record<string, unknown> });
    expect(events.map((e) => [e.action, e.principal, e.details.operator])).toEqual([
      ['key.rotation.start', 'cli', 'erin'],
      ['key.rotation.rewrap', 'cli', 'erin'],
      ['key.rotation.complete', 'cli', 'erin'],
    ]);
  });

  it('names --operator in the events of keys rotate-fingerprint', async () => {
    // The next key written beside the current one and its wait backdated, as in the rotate-fingerprint test below;
    // an unexpired idempotency record stops it before retiring (exit 75), after its backfill and switch.
    const name = uniqueName('fp-operator');
    const tenantId = idOf(await cardvault('tenants', 'create', name));
    const kms = await openLocalKms({ keyFile: env.LOCAL_KMS_KEY_FILE! });
    const { wrapped } = await kms.generateDataKey({ tenantId, purpose: 'fingerprint' });
    await db.query("INSERT INTO fingerprint_keys (tenant_id, generation, kms_key_id, key_wrapped, state) VALUES ($1, 2, $2, $3, 'next')", [
      tenantId, wrapped.kmsKeyId, wrapped.ciphertext,
    ]);
    await db.query("UPDATE fingerprint_keys SET state_changed_at = now() - interval '1 minute' WHERE tenant_id = $1", [tenantId]);
    await db.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_digest, digest_generation, expires_at)
       VALUES ($1, 'order-1', 'digest', 1, now() + interval '1 hour')`,
      [tenantId],
    );
    const fingerprint = await cardvault('keys', 'rotate-fingerprint', '--tenant', name, '--operator', 'frank');
    expect(outcome(fingerprint, 75)).toEqual({ code: 75 });
    expect(await cliDetails(tenantId, 'key.fingerprint_rotation.backfill')).toEqual([{ generation: 2, backfilled: 0, operator: 'frank' }]);
    expect(await cliDetails(tenantId, 'key.fingerprint_rotation.switch')).toEqual([{ generation: 2, previous_generation: 1, operator: 'frank' }]);
  });

  it('names the OS account without --operator, and the account sudo was run from', async () => {
    const account = os.userInfo().username;
    const plain = await cardvault('tenants', 'create', uniqueName('os-user'));
    expect(outcome(plain)).toEqual({ code: 0 });
    expect(await cliDetails(idOf(plain), 'tenant.create')).toEqual([expect.objectContaining({ operator: account })]);

    const sudo = await runCli(['tenants', 'create', uniqueName('sudo-user')], { ...env, SUDO_USER: 'alice' });
    expect(outcome(sudo)).toEqual({ code: 0 });
    expect(await cliDetails(idOf(sudo), 'tenant.create')).toEqual([expect.objectContaining({ operator: `alice via sudo as ${account}` })]);
  });

  it('names "unknown" when the OS account cannot be read, and still runs the command', async () => {
    const userInfo = jest.spyOn(os, 'userInfo').mockImplementation(() => {
      throw Object.assign(new Error('no passwd entry for uid 10001'), { code: 'ENOENT' });
    });
    try {
      const created = await cardvault('tenants', 'create', uniqueName('no-user'));
      expect(outcome(created)).toEqual({ code: 0 });
      expect(await cliDetails(idOf(created), 'tenant.create')).toEqual([expect.objectContaining({ operator: 'unknown' })]);
    } finally {
      userInfo.mockRestore();
    }
  });

  it('refuses an --operator that is card-like, too long, empty or not printable, without printing it, and creates nothing', async () => {
    const { newPan } = await import('../support/pans');
    const pan = newPan();
    const name = uniqueName('bad-operator');
    for (const operator of [pan, `ops ${pan.match(/.{1,4}/g)!.join('-')}`, 'a'.repeat(65), '', ' ', 'alice\nbob', 'alice\u202ebob']) {
      const result = await cardvault('tenants', 'create', name, '--operator', operator);
      expect(result.code).toBe(64);
      expect(result.err).toContain('--operator takes');
      expect(result.err.replace(/[^0-9]/g, '')).not.toContain(pan.slice(0, 12));
    }
    const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants WHERE name = $1', [name]);
    expect(rows[0]!.n).toBe(0);
  });
});

describe('cardvault usage', () => {
  it.each([[['frobnicate']], [['tenants', 'delete', 'acme']], [[]]])('exits 64 and prints usage for %j', async (argv) => {
    const result = await cardvault(...argv);
    expect(result.code).toBe(64);
    expect(result.out).toEqual([]);
    expect(result.err).toContain('usage: cardvault <command>');
  });

  it('exits 64 for an option it does not know, and does not repeat one that could be a card number', async () => {
    const unknown = await cardvault('encryption-key', 'rotate', '--overlap', '2');
    expect(unknown.code).toBe(64);
    expect(unknown.err).toContain("Unknown option '--overlap'");
    expect(unknown.err).toContain('usage: cardvault <command>');
    const { newPan } = await import('../support/pans');
    const pan = newPan();
    const cardLike = await cardvault('audit', 'rotate-key', `--${pan}`);
    expect(cardLike.code).toBe(64);
    expect(cardLike.err).toContain('an option or argument was not understood');
    expect(cardLike.err).not.toContain(pan);
  });

  it('exits 64 for an argument a command does not take, without repeating it, and does nothing', async () => {
    const { newPan } = await import('../support/pans');
    const pan = newPan();
    const name = uniqueName('stray');
    const created = await cardvault('tenants', 'create', name);
    expect(outcome(created)).toEqual({ code: 0 });
    const tenantId = (JSON.parse(created.out[0]!) as { id: string }).id;
    // Stands in for the server: a stray argument must be refused before it would start.
    const mainModule = await import('../../src/main');
    const serve = jest.spyOn(mainModule, 'main').mockResolvedValue(undefined);
    try {
      const runs = [
        await cardvault('keys', 'create', '--tenant', name, '--role', 'merchant', pan),
        await cardvault('keys', 'list', '--tenant', name, pan),
        await cardvault('updater', 'run', '--tenant', name, pan),
        await cardvault('serve', pan),
        await cardvault('serve', '--port', '8080'),
      ];
      for (const run of runs) {
        expect(run.code).toBe(64);
        expect(run.out).toEqual([]);
        expect(run.err).toContain('usage: cardvault <command>');
        expect(run.err.replace(/[^0-9]/g, '')).not.toContain(pan.slice(0, 12));
      }
      expect(runs[0]!.err).toContain('keys create takes no argument');
      expect(serve).not.toHaveBeenCalled();
    } finally {
      serve.mockRestore();
    }
    const issued = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1', [tenantId]);
    expect(issued[0]!.n).toBe(0);
    const runsStarted = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = 'updater.run.start'",
      [tenantId],
    );
    expect(runsStarted[0]!.n).toBe(0);
  });

  it('names the unknown command', async () => {
    expect((await cardvault('frobnicate')).err).toContain('unknown command: frobnicate');
  });
});

describe('the package bin (npx cardvault)', () => {
  beforeAll(async () => {
    await ensureBuilt();
    await admin(`CREATE DATABASE ${BIN_DATABASE}`);
  }, 180_000);

  it('migrates an empty database as a child process with DATABASE_URL set', async () => {
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, packageJson.bin.cardvault), 'migrate'], {
        cwd: tmpDir,
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: urlOf(BIN_DATABASE) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('error', reject);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(result.stdout)).toEqual({ applied: ALL });

    const migrated = openPostgres({ url: urlOf(BIN_DATABASE), poolSize: 1 });
    try {
      const rows = await migrated.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
      expect(rows.map((row) => row.name)).toEqual(ALL);
    } finally {
      await migrated.close();
    }
  });
});

describe('operator input that could carry a card number', () => {
  it('refuses a digits-only tenant name and a card-like key label', async () => {
    const { newPan } = await import('../support/pans');
    const pan = newPan();
    const tenant = await cardvault('tenants', 'create', pan);
    expect(tenant.code).not.toBe(0);
    expect(tenant.err).toContain('tenant name');
    expect(tenant.err).not.toContain(pan);
    const name = uniqueName('labels');
    expect(outcome(await cardvault('tenants', 'create', name))).toEqual({ code: 0 });
    const label = await cardvault('keys', 'create', '--tenant', name, '--role', 'merchant', '--label', `card ${pan}`);
    expect(label.code).not.toBe(0);
    expect(label.err).toContain('key label');
    expect(label.err).not.toContain(pan);
  });
});

describe('card-like input in failing commands', () => {
  it('is never printed back, whatever the command and however the digits are split', async () => {
    const { newPan } = await import('../support/pans');
    const pan = newPan();
    const dotted = pan.match(/.{1,4}/g)!.join('.');
    const runs = [
      await cardvault('keys', 'revoke', pan),
      await cardvault('keys', 'create', '--tenant', pan, '--role', 'merchant'),
      await cardvault('keys', 'list', '--tenant', dotted),
      await cardvault('updater', 'run', '--tenant', dotted),
      await cardvault('keys', 'rotate-fingerprint', '--tenant', pan),
      await cardvault('audit', 'verify', `${pan}.ndjson`, '--jwks', path.join(tmpDir, `${dotted}.json`)),
    ];
    expect(runs.map((r) => r.code)).toEqual([64, 1, 1, 1, 1, 1]);
    for (const run of runs) {
      const printed = `${run.out.join('\n')}\n${run.err}`.replace(/[^0-9]/g, '');
      expect(printed).not.toContain(pan.slice(0, 12));
    }
    // An ordinary failure still says what went wrong.
    expect((await cardvault('keys', 'list', '--tenant', 'nobody-here')).err).toContain('no tenant named nobody-here');
  });
});

describe('encryption-key rotate and retire', () => {
  it('publishes a new client-side encryption key with an overlap, and retires one exactly once', async () => {
    const rotated = await cardvault('encryption-key', 'rotate', '--overlap-hours', '2');
    expect(outcome(rotated)).toEqual({ code: 0 });
    const { kid, offered_after_hours } = JSON.parse(rotated.out[0]!) as { kid: string; offered_after_hours: number };
    expect(offered_after_hours).toBe(2);
    const [row] = await db.query<{ hours: number; retired: boolean }>(
      'SELECT extract(epoch FROM activates_at - created_at) / 3600 AS hours, retires_at IS NOT NULL AS retired FROM encryption_keys WHERE kid = $1',
      [kid],
    );
    expect(Math.round(Number(row!.hours))).toBe(2);
    expect(row!.retired).toBe(false);

    expect(outcome(await cardvault('encryption-key', 'retire', kid))).toEqual({ code: 0 });
    const [after] = await db.query<{ retired: boolean }>('SELECT retires_at IS NOT NULL AS retired FROM encryption_keys WHERE kid = $1', [kid]);
    expect(after!.retired).toBe(true);
    expect((await cardvault('encryption-key', 'retire', kid)).code).not.toBe(0);
  });

  it('retires a key whose kid begins with "-" (one kid in 64), with or without "--" before it', async () => {
    // Stored directly: the command only names the row, and a generated kid starts with '-' too rarely to wait for.
    const kids = [`-${randomBytes(32).toString('base64url')}`, `-${randomBytes(32).toString('base64url')}`];
    for (const kid of kids) {
      await db.query(
        `INSERT INTO encryption_keys (kid, alg, public_jwk, kms_key_id, wrapped_key, iv, tag, ciphertext, activates_at)
         VALUES ($1, 'RSA-OAEP-256', '{}', 'local:test', '\\x00', $2, $3, '\\x00', now())`,
        [kid, randomBytes(12), randomBytes(16)],
      );
    }
    try {
      expect(outcome(await cardvault('encryption-key', 'retire', kids[0]!))).toEqual({ code: 0 });
      expect(outcome(await cardvault('encryption-key', 'retire', '--', kids[1]!))).toEqual({ code: 0 });
      const rows = await db.query<{ retired: boolean }>('SELECT retires_at IS NOT NULL AS retired FROM encryption_keys WHERE kid = ANY($1)', [kids]);
      expect(rows.map((r) => r.retired)).toEqual([true, true]);
      expect((await cardvault('encryption-key', 'retire', '--', kids[0]!, 'extra')).code).toBe(64);
    } finally {
      // They hold no real key, and keys rotate (below) re-wraps every stored key.
      await db.query('DELETE FROM encryption_keys WHERE kid = ANY($1)', [kids]);
    }
  });
});

describe('keys rotate', () => {
  it('adds a key to the local key file, re-wraps every wrapped key under it with progress, and refuses a bad batch size', async () => {
    expect((await cardvault('keys', 'rotate', '--batch-size', '0')).code).toBe(64);
    // A tenant's fingerprint key is wrapped by the KMS key: at least one key to re-wrap.
    expect(outcome(await cardvault('tenants', 'create', uniqueName('rewrap')))).toEqual({ code: 0 });
    const rotated = await cardvault('keys', 'rotate', '--reencrypt-cards', '--batch-size', '5');
    expect(outcome(rotated)).toEqual({ code: 0 });
    const result = JSON.parse(rotated.out[0]!) as { generation: number; kms_key_id: string; state: string; rewrapped: number };
    expect(result).toMatchObject({ state: 'completed', kms_key_id: expect.stringMatching(/^local:[0-9a-f]{16}$/) });
    expect(result.rewrapped).toBeGreaterThan(0);
    expect(rotated.err).toContain('re-wrap keys [');
    expect(fs.statSync(env.LOCAL_KMS_KEY_FILE!).size % 32).toBe(0);
    expect(fs.statSync(env.LOCAL_KMS_KEY_FILE!).size).toBeGreaterThanOrEqual(64);
    const left = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM data_keys WHERE kms_key_id <> $1', [result.kms_key_id]);
    expect(left[0]!.n).toBe(0);
    const again = JSON.parse((await cardvault('keys', 'rotate')).out[0]!) as { generation: number; kms_key_id: string };
    expect(again.generation).toBe(result.generation + 1);
    expect(again.kms_key_id).not.toBe(result.kms_key_id);
  });
});

describe('keys rotate --abort', () => {
  it('takes no key or re-sealing, and fails with a message when no rotation is in progress', async () => {
    expect((await cardvault('keys', 'rotate', '--abort', '--kms-key-id', 'local:0000000000000000')).code).toBe(64);
    expect((await cardvault('keys', 'rotate', '--abort', '--reencrypt-cards')).code).toBe(64);
    const none = await cardvault('keys', 'rotate', '--abort');
    expect(outcome(none, 1)).toEqual({ code: 1 });
    expect(none.err).toContain('cardvault: no key rotation is in progress');
  });
});

describe('keys rotate stopped by a lagging instance', () => {
  it('exits 75 with the rotation\'s message when it must be run again later', async () => {
    // Driving an instance that keeps writing under the old KMS key is key-rotation.test.ts's; here, the exit code.
    const stopped = new RewrapIncompleteError(7, 3);
    const rotate = jest.spyOn(KeyRotator.prototype, 'rotate').mockRejectedValue(stopped);
    try {
      const result = await cardvault('keys', 'rotate', '--kms-key-id', 'local:0000000000000000');
      expect(rotate).toHaveBeenCalledTimes(1);
      expect(result.code).toBe(75);
      expect(result.out).toEqual([]);
      expect(result.err).toContain(`cardvault: ${stopped.message}`);
      expect(result.err).toMatch(/after 3 re-wrap passes.*run keys rotate again/);
      expect(result.err).not.toContain('usage: cardvault');
    } finally {
      rotate.mockRestore();
    }
  });
});

describe('keys rotate-fingerprint', () => {
  it('refuses bad arguments, exits 75 while old-key idempotency records are unexpired, and finishes when run again', async () => {
    expect((await cardvault('keys', 'rotate-fingerprint')).code).toBe(64);
    expect((await cardvault('keys', 'rotate-fingerprint', '--tenant', 'x', '--all-tenants')).code).toBe(64);
    expect((await cardvault('keys', 'rotate-fingerprint', '--tenant', 'x', '--batch-size', '0')).code).toBe(64);
    const missing = await cardvault('keys', 'rotate-fingerprint', '--tenant', uniqueName('nobody'));
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('no tenant named');

    const name = uniqueName('fprot');
    const tenantId = JSON.parse((await cardvault('tenants', 'create', name)).out[0]!).id as string;
    await db.query(
      `INSERT INTO idempotency_keys (tenant_id, key, request_digest, digest_generation, expires_at)
       VALUES ($1, 'order-1', 'digest', 1, now() + interval '1 hour')`,
      [tenantId],
    );
    // Each state is waited out for ~11 s after it is entered; backdating them stands in for that wait here.
    const backdate = () => db.query("UPDATE fingerprint_keys SET state_changed_at = now() - interval '1 minute' WHERE tenant_id = $1", [tenantId]);
    const kms = await openLocalKms({ keyFile: env.LOCAL_KMS_KEY_FILE! });
    const { wrapped } = await kms.generateDataKey({ tenantId, purpose: 'fingerprint' });
    await db.query("INSERT INTO fingerprint_keys (tenant_id, generation, kms_key_id, key_wrapped, state) VALUES ($1, 2, $2, $3, 'next')", [
      tenantId, wrapped.kmsKeyId, wrapped.ciphertext,
    ]);
    await backdate();

    const blocked = await cardvault('keys', 'rotate-fingerprint', '--tenant', name);
    expect(blocked.code).toBe(75);
    expect(JSON.parse(blocked.out[0]!)).toMatchObject({ tenant: tenantId, state: 'waiting_for_idempotency_records', records: 1 });
    expect(blocked.err).toContain('run the command again after that');

    await db.query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", [tenantId]);
    await backdate();
    const done = await cardvault('keys', 'rotate-fingerprint', '--tenant', tenantId, '--batch-size', '10');
    expect(outcome(done)).toEqual({ code: 0 });
    expect(JSON.parse(done.out[0]!)).toEqual({ tenant: tenantId, generation: 2, state: 'completed', backfilled: 0, cleared: 0 });
    expect(done.err).toContain('clear old fingerprints [');
    const states = await db.query<{ state: string }>('SELECT state FROM fingerprint_keys WHERE tenant_id = $1 ORDER BY generation', [tenantId]);
    expect(states.map((s) => s.state)).toEqual(['retired', 'current']);
  });
});
