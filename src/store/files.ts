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

/** The name of writeFileAtomically's temporary file for `file`, with its random part. */
const temporaryName = (file: string, random: string) => `.${path.basename(file)}.${random}.tmp`;

/**
 * Removes the temporary files a writeFileAtomically of `file` left when its process was killed before the rename
 * (the cleanup after it never ran), for a caller that is the only writer of `file`: one found is no one's.
 */
export async function removeLeftoverTemporaries(file: string): Promise<void> {
  const dir = path.dirname(file);
  const left = (await fs.readdir(dir).catch(() => [] as string[])).filter((name) => {
    const random = /^\.(.+)\.([0-9a-f]{12})\.tmp$/.exec(name);
    return random !== null && name === temporaryName(file, random[2]!);
  });
  for (const name of left) await fs.rm(path.join(dir, name), { force: true });
  if (left.length > 0) await syncDir(dir);
}

/**
 * Writes `data` to a dot-named temporary file beside `file` (mode `mode`, synced), then puts it in place: renamed
 * over `file`, or with `exclusive` linked to it, failing with EEXIST if `file` exists. A reader sees the whole file
 * under its name or nothing, and no temporary file is left behind, whatever fails.
 */
export async function writeFileAtomically(file: string, data: string | Buffer, options: { mode?: number; exclusive?: boolean } = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = path.dirname(file);
  const temp = path.join(dir, temporaryName(file, randomBytes(6).toString('hex')));
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
