// Builds dist/ for the tests that run the compiled vault or CLI as a child process (PGlite needs a real
// module loader, which jest's VM does not provide), once per change of src/ even with suites in parallel.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './env';

/** Compiles src/ into dist/ unless dist/ is already newer; a lock keeps parallel suites from running tsc together. */
export async function ensureBuilt(): Promise<void> {
  const lock = path.join(os.tmpdir(), 'cardvault-dist-build.lock');
  const deadline = Date.now() + 150_000;
  while (!tryMkdir(lock)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}; remove it if no test run is building`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  try {
    if (distIsFresh()) return;
    const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'src/tsconfig.json'], { cwd: REPO_ROOT, encoding: 'utf8' });
    if (tsc.status !== 0) throw new Error(`tsc -p src/tsconfig.json failed:\n${tsc.stdout}${tsc.stderr}`);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function tryMkdir(dir: string): boolean {
  try {
    fs.mkdirSync(dir);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function distIsFresh(): boolean {
  const src = path.join(REPO_ROOT, 'src');
  return (fs.readdirSync(src, { recursive: true }) as string[])
    .filter((file) => /\.(ts|json)$/.test(file) && !file.endsWith('.d.ts'))
    .every((file) => {
      const built = path.join(REPO_ROOT, 'dist', file.replace(/\.ts$/, '.js'));
      return fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(path.join(src, file)).mtimeMs;
    });
}
