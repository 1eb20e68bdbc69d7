// A compiled entry point (dist/main.js, dist/cli.js) run as its own process, to the end: what it wrote, how it exited.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './env';

const EXIT_TIMEOUT_MS = 30_000;

export interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/<file> ...args` from `cwd` with PATH and `env` only; it must exit by itself within 30 s. */
export function runCompiledToExit(command: string[], env: Record<string, string>, cwd: string): Promise<Exited> {
  const [file, ...args] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', file!), ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dist/${file} did not exit within ${EXIT_TIMEOUT_MS} ms:\n${stdout}${stderr}`));
    }, EXIT_TIMEOUT_MS);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
