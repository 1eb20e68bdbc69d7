// Files on local disk written so that a crash leaves the whole new file or none: the key file, the development
// credentials, the account updater's batch files.
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

/** Makes a new or renamed directory entry durable: without it a crash can lose it though the data was synced. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to a dot-named temporary file beside `file` (mode `mode`, synced), then puts it in place: renamed
 * over `file`, or with `exclusive` linked to it, failing with EEXIST if `file` exists. A reader sees the whole file
 * under its name or nothing, and no temporary file is left behind, whatever fails.
 */
export async function writeFileAtomically(file: string, data: string | Buffer, options: { mode?: number; exclusive?: boolean } = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(temp, 'wx', mode);
    try {
      // The mode given to open passes through the umask: say it once more.
      await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.exclusive) await fs.link(temp, file);
    else await fs.rename(temp, file);
  } finally {
    // Gone already after a rename; after a link, or a failure, this is what removes it.
    await fs.rm(temp, { force: true });
  }
  await syncDir(dir);
}
