// The compiled vault (dist/main.js) as a child process: configured through env, logging to .test-run/logs.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOG_DIR, REPO_ROOT } from '../../support/env';
import { freePort } from '../../support/free-port';
import { call } from './client';

const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;

export interface VaultProcess {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly logFile: string;
  /** True until the process exits, for whatever reason. */
  alive(): boolean;
  /** How it ended: an exit code or a signal name; undefined while alive. */
  ended(): number | NodeJS.Signals | undefined;
  kill9(): Promise<void>;
  /** SIGTERM (graceful shutdown), SIGKILL if it outlasts the grace period. */
  stop(): Promise<void>;
}

// Cleanup is explicit, in each suite's afterAll: jest does not run a test file's process 'exit' listeners.
let startedCount = 0;
const scratchDirs: string[] = [];

/** A scratch VAULT_DATA_DIR (development credentials, the local key file); outside .test-run, it holds keys. */
export function scratchDataDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cardvault-fault-${name}-`));
  scratchDirs.push(dir);
  return dir;
}

/** For afterAll, once the vaults are stopped: the scratch directories hold API keys and key files. */
export function removeScratchDirs(): void {
  for (const dir of scratchDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** The settings every fault run shares; each test adds DATABASE_URL and whatever it breaks. */
export function baseEnv(dataDir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOST: '127.0.0.1',
    DEMO_PORT: 'off',
    UPDATER_WORKER: 'off',
    LOG_LEVEL: 'info',
    VAULT_DATA_DIR: dataDir,
    KMS_PROVIDER: 'local',
    LOCAL_KMS_KEY_FILE: path.join(dataDir, 'local-kms.key'),
    AUDIT_ORIGIN: 'cardvault-faults',
    METRICS_PORT: 'off',
  };
}

/** Starts `node dist/main.js` (build it first with ensureBuilt) and waits until /healthz answers. */
export async function startVault(name: string, env: Record<string, string>, port?: number): Promise<VaultProcess> {
  const chosenPort = port ?? (await freePort());
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const logFile = path.join(LOG_DIR, `fault-${name}-${process.pid}-${startedCount++}.log`);
  const log = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'main.js')], {
    cwd: REPO_ROOT,
    env: { ...env, PORT: String(chosenPort) },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error('dist/main.js did not spawn');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const url = `http://127.0.0.1:${chosenPort}`;
  const vault: VaultProcess = {
    url,
    port: chosenPort,
    pid: child.pid,
    logFile,
    alive,
    ended: () => (alive() ? undefined : (child.signalCode ?? child.exitCode ?? undefined)),
    async kill9() {
      if (!alive()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (!alive()) throw new Error(`the vault exited during startup (${vault.ended()}):\n${tail(logFile)}`);
    const healthy = await call(url, 'GET', '/healthz', { timeoutMs: 1000 }).then(
      (res) => res.status === 200,
      () => false,
    );
    if (healthy) return vault;
    if (Date.now() > deadline) {
      await vault.kill9();
      throw new Error(`the vault did not answer /healthz within ${START_TIMEOUT_MS} ms:\n${tail(logFile)}`);
    }
    await sleep(100);
  }
}

/**
 * Runs a test body; if it fails, says whether the vault is still alive and shows the end of its log (request
 * lines left out), so a crash reads as a crash and not as a "socket hang up".
 */
export async function watching(vault: VaultProcess, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    // Let an exit that caused the failure be noticed.
    await sleep(200);
    const state = vault.alive() ? 'the vault is still running' : `the vault EXITED (${vault.ended()})`;
    const log = tail(vault.logFile, 200_000)
      .split('\n')
      .filter((line) => !line.includes('"msg":"request"'))
      .slice(-30)
      .join('\n');
    // Node's own errors come from another realm than jest's: not `instanceof Error` here, but they have a message.
    const message = typeof err === 'object' && err !== null && 'message' in err ? String(err.message) : String(err);
    const explained = `${message}\n\n${state}; its log ends:\n${log}`;
    if (typeof err !== 'object' || err === null) throw new Error(explained);
    // jest prints the stack, which repeats the message it was created with.
    const e = err as { message: string; stack?: string };
    e.stack = e.stack?.replace(message, explained);
    e.message = explained;
    throw err;
  }
}

/** The development API keys the vault wrote on its first start on an empty database (src/bootstrap.ts). */
export function devKeys(dataDir: string): Record<'merchant' | 'payments' | 'auditor' | 'admin', string> {
  const file = JSON.parse(fs.readFileSync(path.join(dataDir, 'credentials.json'), 'utf8')) as { api_keys: Record<string, string> };
  return file.api_keys as Record<'merchant' | 'payments' | 'auditor' | 'admin', string>;
}

/** Polls `probe` until it returns a value (a failed assertion in it fails at once); a deadline, not a timing assertion. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));


/** The end of a log, to explain a failed start; the vault's own scrubber already masked any digit run. */
export function tail(file: string, bytes = 4000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '(no log)';
  }
}

/** The JSON lines of a vault's log. */
export function logEntries(file: string): Array<Record<string, unknown>> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
