// The compiled vault on embedded PGlite as a child process (jest's VM refuses PGlite's import()), for HTTP tests.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOG_DIR, REPO_ROOT } from './env';

const START_TIMEOUT_MS = 60_000;

export interface EmbeddedVault {
  child: ChildProcess;
  baseUrl: string;
  /** The development credentials the first start wrote under <cwd>/.vault. */
  apiKeys: Record<string, string>;
  /** Everything the vault wrote to stdout (its log) and stderr so far. */
  output(): string;
  /** Ends the vault (SIGKILL unless told otherwise) and resolves with its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `node dist/main.js` with only `env` set (no DATABASE_URL: embedded), from `cwd`; resolves once it listens. The
 * demo checkout and the metrics listener are off, so suites running at once never contend for their fixed ports.
 */
export async function startEmbeddedVault(cwd: string, env: Record<string, string> = {}): Promise<EmbeddedVault> {
  const { child, port, output, exited } = await spawnListeningVault(cwd, { DEMO_PORT: 'off', METRICS_PORT: 'off', ...env });
  const credentials = JSON.parse(fs.readFileSync(path.join(cwd, '.vault', 'credentials.json'), 'utf8')) as { api_keys: Record<string, string> };
  return {
    child,
    baseUrl: `http://127.0.0.1:${port}`,
    apiKeys: credentials.api_keys,
    output,
    stop: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * `node dist/main.js` from `cwd` with PATH, PORT=0, LOG_LEVEL=info and `env` only; resolves with its port once its
 * log says it listens. Its log is copied to the run's log folder, which the canary searches for test PANs.
 */
export async function spawnListeningVault(
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; port: number; output(): string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'main.js')], {
    cwd,
    env: { PATH: process.env.PATH, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logFile = path.join(LOG_DIR, `${process.pid}-embedded-vault.ndjson`);
  fs.mkdirSync(LOG_DIR, { recursive: true });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the vault did not listen within ${START_TIMEOUT_MS} ms:\n${stdout}${stderr}`));
    }, START_TIMEOUT_MS);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      fs.appendFileSync(logFile, chunk);
      for (const line of stdout.split('\n')) {
        const entry = parseLine(line);
        if (typeof entry?.port === 'number' && String(entry.msg).startsWith('cardvault listening')) {
          clearTimeout(timer);
          resolve(entry.port);
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the vault exited (${code}) before listening:\n${stdout}${stderr}`));
    });
  });
  return { child, port, output: () => stdout + stderr, exited };
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
