// The embedded database's one-process lock: PGlite has none of its own, and a second process on its data
// directory silently loses committed writes. It sees processes on this host and in this PID namespace only.
import fs from 'node:fs';
import path from 'node:path';
import { StartupError } from '../errors';

export const LOCK_FILE = 'cardvault.lock';

/**
 * The data directories this process holds. A lock naming this process's PID is its own only if listed here;
 * otherwise an earlier process had the same PID (a container restarts its process as PID 1 every time).
 */
const held = new Set<string>();

/**
 * Takes the data directory (which must exist) for this process, or throws if another process that is still
 * running holds it; a lock left by one that is gone is taken over. Returns the function that releases it.
 */
export function lockDataDir(dataDir: string): () => void {
  const dir = fs.realpathSync(dataDir);
  const file = path.join(dir, LOCK_FILE);
  // Bounded: a lock that keeps vanishing and reappearing is another process taking it.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    if (create(file)) {
      held.add(dir);
      let released = false;
      // Once: a second call must not remove a lock this process has taken again since.
      return () => {
        if (released) return;
        released = true;
        held.delete(dir);
        if (holderOf(file) === process.pid) fs.rmSync(file, { force: true });
      };
    }
    const holder = holderOf(file);
    if (holder === 'gone') continue;
    if (holder === 'unreadable' || (holder === process.pid ? held.has(dir) : isRunning(holder))) break;
    // Removed only if it still names the process found gone: never a lock another process has just taken over.
    if (holderOf(file) === holder) fs.rmSync(file, { force: true });
  }
  // The file's contents are not quoted: whatever wrote them, they are not this message's to repeat.
  throw new StartupError(
    `the embedded database in ${dir} is in use by another process (PGlite admits one at a time): stop it first, ` +
      `or use PostgreSQL (DATABASE_URL) to run several. If no such process runs, remove ${LOCK_FILE} from that directory.`,
  );
}

/** Written aside and linked into place: link(2) fails if the lock exists, and a lock is never seen without its PID. */
function create(file: string): boolean {
  const pending = `${file}.${process.pid}`;
  fs.writeFileSync(pending, `${process.pid}\n`, { mode: 0o600 });
  try {
    fs.linkSync(pending, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(pending, { force: true });
  }
}

function holderOf(file: string): number | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  // A positive integer only: process.kill(0) or a negative PID would probe a whole process group.
  return /^[1-9][0-9]{0,9}\n?$/.test(text) ? Number(text.trim()) : 'unreadable';
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: running, as another user.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
