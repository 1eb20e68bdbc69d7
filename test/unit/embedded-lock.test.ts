// The embedded database's one-process lock: who may take a data directory, and when a lock left behind is taken over.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StartupError } from '../../src/errors';
import { LOCK_FILE, lockDataDir } from '../../src/store/embedded-lock';

let dir: string;
const releases: Array<() => void> = [];

beforeEach(() => {
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-embedded-lock-')));
});
afterEach(() => {
  for (const release of releases.splice(0)) release();
  fs.rmSync(dir, { recursive: true, force: true });
});

const lock = (dataDir = dir) => {
  const release = lockDataDir(dataDir);
  releases.push(release);
  return release;
};
const lockFile = () => path.join(dir, LOCK_FILE);

/** The PID of a process that has exited: what a crashed vault leaves in its lock. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  return child.pid!;
}

it('refuses a second lock on the same directory in the same process, naming the directory', () => {
  lock();
  expect(fs.readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
  expect(() => lockDataDir(dir)).toThrow(`the embedded database in ${dir} is in use by another process`);
  // A StartupError: the server's startup log keeps its message (main.ts), as the CLI prints it.
  expect(() => lockDataDir(dir)).toThrow(StartupError);
});

it('refuses the directory under another name (a symlink) too', () => {
  lock();
  const alias = `${dir}-alias`;
  fs.symlinkSync(dir, alias);
  try {
    expect(() => lockDataDir(alias)).toThrow(/is in use by another process/);
  } finally {
    fs.rmSync(alias);
  }
});

it('refuses while another running process holds the lock, and takes it over once that process is gone', async () => {
  const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => other.once('exit', resolve));
  try {
    fs.writeFileSync(lockFile(), `${other.pid}\n`);
    expect(() => lockDataDir(dir)).toThrow(/is in use by another process/);
    expect(fs.readFileSync(lockFile(), 'utf8')).toBe(`${other.pid}\n`);
  } finally {
    other.kill('SIGKILL');
    await exited;
  }
  lock();
  expect(fs.readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
});

it('takes over a stale lock whose process no longer runs', () => {
  fs.writeFileSync(lockFile(), `${deadPid()}\n`);
  lock();
  expect(fs.readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
});

it("takes over a lock naming this process's PID that this process does not hold (a restarted container's PID 1)", () => {
  fs.writeFileSync(lockFile(), `${process.pid}\n`);
  lock();
  expect(() => lockDataDir(dir)).toThrow(/is in use by another process/);
});

it('refuses a lock it cannot read, without quoting its contents', () => {
  fs.writeFileSync(lockFile(), 'left-by-something-else\n');
  let message = '';
  try {
    lockDataDir(dir);
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toContain(dir);
  expect(message).toContain(LOCK_FILE);
  expect(message).not.toContain('left-by-something-else');
});

it('releases on close: the file is gone, the directory can be taken again, and a second release does nothing', () => {
  const release = lockDataDir(dir);
  release();
  expect(fs.existsSync(lockFile())).toBe(false);
  const again = lock();
  release();
  expect(fs.readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
  again();
  expect(fs.existsSync(lockFile())).toBe(false);
});

it('leaves no file of its own behind but the lock', () => {
  lock();
  expect(fs.readdirSync(dir)).toEqual([LOCK_FILE]);
});
