// The bench's vault: N worker processes sharing one listening port through node:cluster, as a multi-core host runs it.
import cluster, { type Worker } from 'node:cluster';
import { ConfigError, loadConfig } from '../config';
import { closeNow } from '../http/server';
import { createLogger } from '../log';
import { startVault } from '../main';
import { STAND_IN_KINDS, startStandIn, type StandInKind } from './stand-in';

/** Sent to the parent over IPC once every worker listens; the pids let the bench account their CPU. */
export interface ClusterReady {
  type: 'cardvault-cluster-ready';
  pids: number[];
}

function workerCount(argv: readonly string[]): number {
  const at = argv.indexOf('--workers');
  const count = at >= 0 ? Number(argv[at + 1]) : 1;
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new Error('--workers must be an integer from 1 to 64');
  return count;
}

/** `--stand-in node|express`: the workers serve the bench's floor (stand-in.ts) instead of the vault. */
function standInKind(argv: readonly string[]): StandInKind | undefined {
  const at = argv.indexOf('--stand-in');
  if (at < 0) return undefined;
  const kind = STAND_IN_KINDS.find((k) => k === argv[at + 1]);
  if (!kind) throw new Error(`--stand-in must be one of ${STAND_IN_KINDS.join(', ')}`);
  return kind;
}

function fork(): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const worker = cluster.fork();
    const failed = (code: number | null) => reject(new Error(`a vault worker exited with ${code} before listening`));
    worker.once('exit', failed);
    worker.once('listening', () => {
      worker.off('exit', failed);
      resolve(worker);
    });
  });
}

async function runPrimary(count: number): Promise<void> {
  let stopping = false;
  const workers: Worker[] = [];
  const stopAll = (code: number) => {
    if (stopping) return;
    stopping = true;
    const alive = workers.filter((w) => !w.isDead());
    if (alive.length === 0) process.exit(code);
    let left = alive.length;
    for (const worker of alive) {
      worker.once('exit', () => {
        if (--left === 0) process.exit(code);
      });
      worker.process.kill('SIGTERM');
    }
    setTimeout(() => process.exit(code), 15_000).unref();
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stopAll(0));
  // The bench died or let go of us: never outlive it.
  process.once('disconnect', () => stopAll(0));
  cluster.on('exit', (worker, code) => {
    if (!stopping) {
      process.stderr.write(`cardvault-cluster: worker ${worker.process.pid} exited with ${code}; stopping\n`);
      stopAll(1);
    }
  });

  // The first worker migrates and writes the development credentials alone; the others then find them done.
  workers.push(await fork());
  workers.push(...(await Promise.all(Array.from({ length: count - 1 }, fork))));
  const ready: ClusterReady = { type: 'cardvault-cluster-ready', pids: workers.map((w) => w.process.pid ?? 0) };
  process.send?.(ready);
}

async function runWorker(standIn: StandInKind | undefined): Promise<void> {
  const config = loadConfig(process.env);
  let stop: () => Promise<void>;
  if (standIn) {
    const server = await startStandIn(standIn, config.host, config.port);
    stop = () => closeNow(server);
  } else {
    ({ stop } = await startVault(config, createLogger({ level: config.logLevel })));
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

function fail(err: unknown): void {
  const message = err instanceof ConfigError || err instanceof Error ? err.message : 'unknown error';
  process.stderr.write(`cardvault-cluster: ${message}\n`);
  process.exit(1);
}

if (require.main === module) {
  if (cluster.isPrimary) runPrimary(workerCount(process.argv)).catch(fail);
  else runWorker(standInKind(process.argv)).catch(fail);
}
