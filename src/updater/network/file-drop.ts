// The file-drop exchange with a card network: folders standing in for SFTP, written atomically, readable by owner only.
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { VaultError } from '../../errors';
import { removeLeftoverTemporaries, syncDir, writeFileAtomically } from '../../store/files';

/** The vault sends requests and receives responses; the network (or its simulator) does the reverse. */
export type DropSide = 'vault' | 'network';

export interface FileDropOptions {
  /** Where this side writes its files. */
  outbox: string;
  /** Where this side finds the other side's files; handled ones move to `processed/` inside it. */
  inbox: string;
  side?: DropSide;
}

const SUFFIX: Record<DropSide, { sends: string; receives: string }> = {
  vault: { sends: '.req', receives: '.resp' },
  network: { sends: '.resp', receives: '.req' },
};

// Batch files hold PANs: nobody but the owner may list the folders or read the files.
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** A batch id becomes a file name, so it may not carry a path: no separators, no leading dot, no "..". */
const BATCH_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function isBatchId(batchId: string): boolean {
  return typeof batchId === 'string' && BATCH_ID.test(batchId) && !batchId.includes('..');
}

function checkBatchId(batchId: string): void {
  if (!isBatchId(batchId)) {
    throw new VaultError('invalid_field', 'batchId must be 1-128 letters, digits, "_", "-" or "." and start with a letter or digit');
  }
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

async function ensureDir(dir: string): Promise<void> {
  const created = await fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
  // mkdir's mode passes through the umask; say it once more so the folder is exactly 0700 whatever the umask.
  if (created !== undefined) await fs.chmod(dir, DIR_MODE);
}

export class FileDropTransport {
  readonly outbox: string;
  readonly inbox: string;
  readonly side: DropSide;

  constructor(options: FileDropOptions) {
    this.outbox = path.resolve(options.outbox);
    this.inbox = path.resolve(options.inbox);
    this.side = options.side ?? 'vault';
  }

  /** The same folders seen from the other end: what this side sends, the counterpart receives. */
  counterpart(): FileDropTransport {
    return new FileDropTransport({ outbox: this.inbox, inbox: this.outbox, side: this.side === 'vault' ? 'network' : 'vault' });
  }

  /**
   * Writes `<batchId>.req` (or `.resp` on the network side) to the outbox and returns its path. The text goes to a
   * dot-named temp file first and is renamed into place, so a reader sees the whole file under its final name or
   * nothing. Sending the same batch id again replaces the earlier file, which makes a retried send harmless.
   */
  async send(batchId: string, fileText: string): Promise<string> {
    checkBatchId(batchId);
    await ensureDir(this.outbox);
    const finalPath = path.join(this.outbox, `${batchId}${SUFFIX[this.side].sends}`);
    // One writer per batch (the run's fenced lease): a temp file of this batch's is one a killed send left, cards and all.
    await removeLeftoverTemporaries(finalPath);
    await writeFileAtomically(finalPath, fileText, { mode: FILE_MODE });
    return finalPath;
  }

  /** The other side's file for this batch, or undefined while it has not arrived (or once it has been archived). */
  async receive(batchId: string): Promise<string | undefined> {
    checkBatchId(batchId);
    const file = path.join(this.inbox, `${batchId}${SUFFIX[this.side].receives}`);
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: a symlink dropped in the inbox must not make the vault read some other file as a batch.
      handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      return await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  }

  /**
   * Moves this batch's received file to `<inbox>/processed/` (0600 there). Idempotent: archiving an already
   * archived batch does nothing; archiving a batch that never arrived is a not_found error.
   */
  async archive(batchId: string): Promise<string> {
    checkBatchId(batchId);
    const name = `${batchId}${SUFFIX[this.side].receives}`;
    const processedDir = path.join(this.inbox, 'processed');
    const from = path.join(this.inbox, name);
    const to = path.join(processedDir, name);
    const found = await lstatOrUndefined(from);
    if (found === undefined) {
      if (await lstatOrUndefined(to)) return to;
      throw new VaultError('not_found', 'no received file for this batch to archive');
    }
    // chmod below follows symlinks, so only a plain file may be archived (receive refuses symlinks too).
    if (!found.isFile()) throw new VaultError('invalid_request', 'the received file for this batch is not a regular file');
    await ensureDir(processedDir);
    await fs.rename(from, to);
    // The other side chose the file's mode; in the archive, where it may stay for months, it is ours.
    await fs.chmod(to, FILE_MODE);
    await syncDir(this.inbox);
    return to;
  }

  /** Batch ids of the other side's files waiting in the inbox, oldest name first. */
  async list(): Promise<string[]> {
    const suffix = SUFFIX[this.side].receives;
    let names: string[];
    try {
      names = await fs.readdir(this.inbox);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    return names
      .filter((name) => name.endsWith(suffix) && !name.startsWith('.'))
      .map((name) => name.slice(0, -suffix.length))
      .filter(isBatchId)
      .sort();
  }

  /**
   * When the other side's file for this batch was last written (its mtime, not following a symlink), or undefined
   * while it is not in the inbox.
   */
  async receivedAt(batchId: string): Promise<Date | undefined> {
    checkBatchId(batchId);
    return (await lstatOrUndefined(path.join(this.inbox, `${batchId}${SUFFIX[this.side].receives}`)))?.mtime;
  }

  /**
   * Deletes this side's own file for this batch if the other side has not taken it from the outbox, and nothing
   * else: on the vault's side a request nobody will answer in time, whose answer, if it still comes, is kept to be
   * read. Idempotent.
   */
  async withdraw(batchId: string): Promise<void> {
    checkBatchId(batchId);
    const sent = path.join(this.outbox, `${batchId}${SUFFIX[this.side].sends}`);
    await removeLeftoverTemporaries(sent);
    if (await removeIfPresent(sent)) await syncDir(this.outbox);
  }

  /**
   * Deletes this batch's files on this side, received and archived, and on the vault's side its own request if
   * the relay left it in the outbox: batch files hold card numbers, and once a batch is applied (its response
   * read) nothing needs them. The network side keeps what it sent, which the vault has yet to read. Idempotent.
   */
  async discard(batchId: string): Promise<void> {
    checkBatchId(batchId);
    const name = `${batchId}${SUFFIX[this.side].receives}`;
    const removed = await Promise.all([removeIfPresent(path.join(this.inbox, name)), removeIfPresent(path.join(this.inbox, 'processed', name))]);
    if (removed.some(Boolean)) await syncDir(this.inbox);
    if (this.side === 'vault') await this.withdraw(batchId);
  }
}

/** Removes a file if it is there; a second removal is not an error. */
async function removeIfPresent(file: string): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

async function lstatOrUndefined(file: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
