// A PostgreSQL 15 cluster and a Redis of the suite's own, on free ports: the shared ones on 5432 and 6379 are
// never stopped, since other suites may be using them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../support/free-port';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PrivatePostgres {
  readonly port: number;
  /** The cluster's `postgres` database, as its superuser (trust authentication on loopback). */
  readonly url: string;
  /** `pg_ctl stop -m immediate`: every backend is killed without a checkpoint, as in a crash. */
  crash(): void;
  /** Starts it again on the same port; crash recovery replays the WAL. */
  start(): void;
  /** Stops it and deletes the cluster. */
  destroy(): void;
}

/** initdb refuses to run as root: then the cluster belongs to the `postgres` user and pg_ctl runs as it. */
function asClusterOwner(command: string, args: string[]): { command: string; args: string[] } {
  return process.getuid?.() === 0 ? { command: 'runuser', args: ['-u', 'postgres', '--', command, ...args] } : { command, args };
}

function run(command: string, args: string[]): void {
  const how = asClusterOwner(command, args);
  const result = spawnSync(how.command, how.args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}):\n${result.stdout}${result.stderr}`);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-fault-pgcluster-'));
  if (process.getuid?.() === 0) spawnSync('chown', ['postgres:postgres', dir]);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const port = await freePort();
  run(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=on -c synchronous_commit=on`;
  const start = () => run(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', options, 'start']);
  const stop = () => run(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
  // pg_ctl detaches the server: the suite's afterAll must call destroy(), also when a test failed.
  let running = false;
  start();
  running = true;
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    crash() {
      stop();
      running = false;
    },
    start() {
      start();
      running = true;
    },
    destroy() {
      if (running) stop();
      running = false;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** SIGKILL: connections drop at once, nothing is saved. Also the suite's afterAll cleanup. */
  kill(): Promise<void>;
  /** A new redis-server on the same port (empty: it saves nothing). */
  start(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const redis: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async kill() {
      const current = child;
      if (!current || current.exitCode !== null || current.signalCode !== null) return;
      const exited = new Promise((resolve) => current.once('exit', resolve));
      current.kill('SIGKILL');
      await exited;
    },
    async start() {
      child = await spawnRedis(port);
    },
  };
  await redis.start();
  return redis;
}

function spawnRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on ${port}: ${output}`)), 10_000);
    // Read to the end, also once it is ready: an unread pipe would fill and stall it.
    child.stdout!.on('data', (chunk: Buffer) => {
      if (ready) return;
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        ready = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr!.resume();
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${output}`));
    });
  });
}
