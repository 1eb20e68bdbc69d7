// One process at a time on an embedded (PGlite) data directory: a second one would silently lose committed writes.
// The compiled code runs in child processes: PGlite's bundle calls import(), which jest's VM refuses.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../support/env';
import { ensureBuilt } from '../support/build';

// PGlite takes seconds to start, and each test starts it a few times.
jest.setTimeout(120_000);

const LOCK_FILE = 'cardvault.lock';

let tmpDir: string;
let holder: ChildProcess | undefined;

beforeAll(async () => {
  await ensureBuilt();
}, 180_000);
beforeEach(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-embedded-lock-'));
});
afterEach(() => {
  holder?.kill('SIGKILL');
  holder = undefined;
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Runs a script against the compiled store with DATA_DIR set; resolves with its exit code, stdout and stderr. */
function node(script: string, env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['-e', script], { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 90_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const cardvault = (...argv: string[]) =>
  spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'cli.js'), ...argv], {
    cwd: tmpDir,
    env: { PATH: process.env.PATH, VAULT_DATA_DIR: path.join(tmpDir, '.vault') },
    encoding: 'utf8',
    timeout: 90_000,
  });

it('refuses a second open of the same data directory in one process, and opens it again once the first is closed', () => {
  const dataDir = path.join(tmpDir, 'pgdata');
  const result = node(
    `
    const fs = require('node:fs');
    const { openEmbedded } = require('./dist/store/db');
    (async () => {
      const dataDir = process.env.DATA_DIR;
      const first = await openEmbedded({ dataDir });
      const second = await openEmbedded({ dataDir }).then(async (db) => { await db.close(); return 'opened'; }, (err) => err.message);
      await first.query('SELECT 1');
      await first.close();
      const lockedAfterClose = fs.existsSync(dataDir + '/${LOCK_FILE}');
      const third = await openEmbedded({ dataDir });
      const [row] = await third.query('SELECT 1 AS one');
      await third.close();
      console.log(JSON.stringify({ second, lockedAfterClose, third: row, lockedAtEnd: fs.existsSync(dataDir + '/${LOCK_FILE}') }));
    })().catch((err) => { console.error(err); process.exit(1); });
    `,
    { DATA_DIR: dataDir },
  );
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  expect(JSON.parse(result.stdout)).toEqual({
    second: expect.stringContaining(`the embedded database in ${fs.realpathSync(dataDir)} is in use by another process`),
    lockedAfterClose: false,
    third: { one: 1 },
    lockedAtEnd: false,
  });
});

it('refuses `cardvault migrate` while another process has the database open, and takes over the lock it leaves when killed', async () => {
  const dataDir = path.join(tmpDir, '.vault', 'pgdata');
  const child = spawn(
    process.execPath,
    ['-e', `require('./dist/store/db').openEmbedded({ dataDir: process.env.DATA_DIR }).then(() => { console.log('open'); setInterval(() => {}, 1000); });`],
    { cwd: REPO_ROOT, env: { PATH: process.env.PATH, DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  holder = child;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString('utf8').includes('open')) resolve();
    });
    void exited.then(() => reject(new Error('the holder exited before opening the database')));
  });

  const refused = cardvault('migrate');
  expect(refused.status).toBe(1);
  expect(refused.stderr).toContain(`the embedded database in ${fs.realpathSync(dataDir)} is in use by another process`);
  expect(refused.stdout).toBe('');

  // Killed, as by a crash or the OOM killer: its lock stays behind, naming a process that is gone.
  child.kill('SIGKILL');
  await exited;
  expect(fs.existsSync(path.join(dataDir, LOCK_FILE))).toBe(true);
  const migrated = cardvault('migrate');
  expect({ status: migrated.status, stderr: migrated.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(migrated.stdout).applied.length).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(dataDir, LOCK_FILE))).toBe(false);
});
