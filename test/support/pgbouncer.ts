// A real PgBouncer (Debian's package, which .ci/run installs) on a free port, in front of the test PostgreSQL.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port';
import { waitFor } from './wait-for';

export const PGBOUNCER = process.env.PGBOUNCER_PATH ?? '/usr/sbin/pgbouncer';

export interface RunningPgBouncer {
  readonly port: number;
  /** `database` on the test PostgreSQL, through the pooler. */
  url(database: string): string;
  /** What PgBouncer logged: its refusals name the startup parameter. */
  log(): string;
  stop(): Promise<void>;
}

/** Session pooling, as the README advises; trust on loopback, as the test PostgreSQL. */
export async function startPgBouncer(upstream = { host: '127.0.0.1', port: 5432 }): Promise<RunningPgBouncer> {
  if (!fs.existsSync(PGBOUNCER)) throw new Error(`${PGBOUNCER} is missing: install Debian's pgbouncer package (.ci/run does)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-pgbouncer-'));
  const port = await freePort();
  const logFile = path.join(dir, 'pgbouncer.log');
  fs.writeFileSync(path.join(dir, 'users.txt'), '"postgres" ""\n');
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${upstream.host} port=${upstream.port}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = session',
      `logfile = ${logFile}`,
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root: then it switches to the postgres user, which must own its folder.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) spawnSync('chown', ['-R', 'postgres:postgres', dir]);
  const child: ChildProcess = spawn(PGBOUNCER, [...(asRoot ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`it exited with ${child.exitCode}`);
      return accepts(port);
    }, 10_000, 50);
  } catch (err) {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`PgBouncer did not listen on ${port} (${(err as Error).message}):\n${log()}`);
  }
  return {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
