// What the compiled vault writes as it dies (a failed start, an exception or a rejection nothing caught): the
// logger's line, with the error by type and code only, never Node's own print of the whole error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { adminQuery } from '../support/admin-db';
import { runCompiledToExit, type Exited } from '../support/compiled';
import { REPO_ROOT } from '../support/env';
import { ensureBuilt } from '../support/build';
import { newPan } from '../support/pans';

jest.setTimeout(60_000);

/** Stands in for what a driver's message can quote (a row, a value from a request); it must reach no output. */
const QUOTED = 'quoted-row-value';

let tmpDir: string;

beforeAll(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-last-words-'));
  await ensureBuilt();
}, 180_000);

afterAll(() => {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Runs dist/main.js (or `cardvault worker`) as a development vault in a scratch folder, with `env` over it; it must exit by itself. */
function runCompiledServer(env: Record<string, string>, command: string[] = ['main.js']): Promise<Exited> {
  const cwd = fs.mkdtempSync(path.join(tmpDir, 'case-'));
  const base = { PORT: '0', HOST: '127.0.0.1', DEMO_PORT: 'off', UPDATER_WORKER: 'off', METRICS_PORT: 'off', VAULT_DATA_DIR: path.join(cwd, '.vault') };
  return runCompiledToExit(command, { ...base, ...env }, cwd);
}

/** The JSON log lines among what the process wrote. */
function logLines(output: string): Array<Record<string, any>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);
}

/** A module loaded before main.js (NODE_OPTIONS=--require) that fails once startup is under way, as a bug would. */
function failingPreload(how: 'throw' | 'reject', afterMs?: number): string {
  const file = path.join(tmpDir, `fail-by-${how}-${afterMs ?? 'now'}.js`);
  const fail = how === 'throw' ? 'throw failure' : 'void Promise.reject(failure)';
  const when = afterMs === undefined ? 'setImmediate(() => {' : `setTimeout(() => {`;
  fs.writeFileSync(file, `const failure = Object.assign(new Error(process.env.FAILURE_MESSAGE), { code: 'EFAILED' });\n${when} ${fail}; }${afterMs === undefined ? '' : `, ${afterMs}`});\n`);
  return file;
}

describe.each([
  ['an exception nothing caught', 'throw', 'uncaughtException'],
  ['a rejection nothing handled', 'reject', 'unhandledRejection'],
] as const)('%s', (_case, how, origin) => {
  it('is logged by type and code through the logger, and the process exits 1', async () => {
    const result = await runCompiledServer({
      NODE_OPTIONS: `--require ${failingPreload(how)}`,
      FAILURE_MESSAGE: `declined: ${QUOTED} ${newPan()}`,
      POLICIES_DIR: path.join(REPO_ROOT, 'policies'),
    });
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).not.toContain(QUOTED);
    const crash = logLines(result.stdout).find((line) => line.level === 'fatal');
    expect(crash).toMatchObject({ origin, err: { type: 'Error', code: 'EFAILED' } });
    expect(Object.keys(crash!.err).sort()).toEqual(['code', 'stack', 'type']);
  });
});

describe('the account-updater worker (cardvault worker)', () => {
  it('logs an exception nothing caught by type and code, and exits 1', async () => {
    // Late enough for the worker to be running: it installs its handlers once its database is open.
    const result = await runCompiledServer(
      { NODE_OPTIONS: `--require ${failingPreload('throw', 4000)}`, FAILURE_MESSAGE: `declined: ${QUOTED} ${newPan()}`, POLICIES_DIR: path.join(REPO_ROOT, 'policies') },
      ['cli.js', 'worker'],
    );
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).not.toContain(QUOTED);
    expect(logLines(result.stdout).find((line) => line.level === 'fatal')).toMatchObject({ origin: 'uncaughtException', err: { type: 'Error', code: 'EFAILED' } });
  });
});

describe('a failed start', () => {
  it('logs the error by type and code, not by what its message quotes, and exits 1', async () => {
    // A database that does not exist: the server's message quotes its name.
    const result = await runCompiledServer({ DATABASE_URL: `postgres://postgres@127.0.0.1:5432/cardvault_${QUOTED.replace(/-/g, '_')}`, POLICIES_DIR: path.join(REPO_ROOT, 'policies') });
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).not.toContain(QUOTED.replace(/-/g, '_'));
    const failed = logLines(result.stdout).find((line) => line.level === 'fatal');
    expect(failed).toMatchObject({ msg: 'cardvault failed to start', err: { code: '3D000' } });
  });

  it('keeps the message of a refusal the vault wrote itself: pending migrations, and what to run', async () => {
    const name = `cardvault_lastwords_${Date.now().toString(36)}`;
    await adminQuery(`CREATE DATABASE ${name}`);
    try {
      const result = await runCompiledServer({ DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${name}`, MIGRATE_ON_START: 'false', POLICIES_DIR: path.join(REPO_ROOT, 'policies') });
      expect(result.code).toBe(1);
      const failed = logLines(result.stdout).find((line) => line.level === 'fatal');
      expect(failed!.msg).toMatch(/pending migrations \(0001_tenants.*run `cardvault migrate`/);
      expect(failed!.err).toMatchObject({ type: 'StartupError' });
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  it('keeps the message of a configuration error, which names a file and a field and quotes nothing else', async () => {
    const policiesDir = fs.mkdtempSync(path.join(tmpDir, 'policies-'));
    fs.cpSync(path.join(REPO_ROOT, 'policies'), policiesDir, { recursive: true });
    fs.writeFileSync(path.join(policiesDir, 'merchant.yaml'), 'role: merchant\nactions: [tokenize, teleport]\n');
    const result = await runCompiledServer({ POLICIES_DIR: policiesDir });
    expect(result.code).toBe(1);
    const failed = logLines(result.stdout).find((line) => line.level === 'fatal');
    expect(failed!.msg).toContain(path.join(policiesDir, 'merchant.yaml'));
    expect(failed!.msg).toContain('field /actions/1');
    expect(failed!.err).toMatchObject({ type: 'PolicyError' });
  });
});
