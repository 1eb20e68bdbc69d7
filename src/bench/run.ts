// `npm run bench`: the vault as deployed (cluster workers on PostgreSQL) under closed-loop load; prints ops/s and latency.
import { randomInt } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { ClusterReady } from './cluster';
import { readOptions, type Options } from './options';
import { runPacedPhase, runPhase, warmUp, type PhaseResult } from './phase';
import { printReport } from './report';
import { STAND_IN_KINDS } from './stand-in';
import { openClient, send, StandInWorkload, Workload } from './workload';

/** The steady rate of the latency run (README: p99 at 1,000 req/s). */
const PACED_RATE = 1000;
/** Open loop needs connections for whatever is in flight at once, not a fixed lane count. */
const PACED_CONNECTIONS = 512;

/** A fresh database each run: the figures never depend on what an earlier run left behind. */
async function recreateDatabase(adminUrl: string, database: string): Promise<string> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/**
 * Planner statistics for the cards just written. Without them PostgreSQL serves a token lookup from the partial
 * fingerprint index and filters the whole tenant (~O(cards) per detokenize); autovacuum would gather them on a
 * production server, but may be off or not have come round yet on a bench database seconds old.
 */
async function analyze(databaseUrl: string): Promise<void> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Starts dist/bench/cluster.js and resolves with the worker pids once every worker listens. */
function startCluster(options: Options, env: NodeJS.ProcessEnv, standIn: string[] = []): { child: ChildProcess; ready: Promise<number[]> } {
  const profile = options.cpuProfileDir && standIn.length === 0 ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [];
  const child = spawn(process.execPath, [...profile, path.join(__dirname, 'cluster.js'), '--workers', String(options.processes), ...standIn], {
    cwd: path.resolve(__dirname, '..', '..'),
    env,
    // The vault's own log lines (warn and above, PAN-scrubbed) go to stderr, away from the results.
    stdio: ['ignore', process.stderr, process.stderr, 'ipc'],
  });
  const ready = new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the vault did not start within 60 s')), 60_000).unref();
    child.once('exit', (code) => reject(new Error(`the vault cluster exited with ${code} before it was ready`)));
    child.on('message', (message: ClusterReady) => {
      if (message?.type !== 'cardvault-cluster-ready') return;
      clearTimeout(timer);
      resolve([child.pid ?? 0, ...message.pids]);
    });
  });
  return { child, ready };
}

async function stopCluster(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const force = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(force);
}

/** The keys the first vault start wrote; a parse error is not echoed, since its message can quote the file. */
async function readApiKeys(dataDir: string): Promise<{ merchant: string; payments: string }> {
  let keys: Record<string, unknown> | undefined;
  try {
    keys = (JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8')) as { api_keys?: Record<string, unknown> }).api_keys;
  } catch {
    throw new Error('the vault wrote no readable credentials.json');
  }
  const { merchant, payments } = keys ?? {};
  if (typeof merchant !== 'string' || typeof payments !== 'string') throw new Error('credentials.json lacks a merchant or payments key');
  return { merchant, payments };
}

async function waitUntilReady(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  const probe = openClient(port, 1);
  try {
    for (;;) {
      const status = await send(probe, 'GET', '/readyz').then((r) => r.status, () => 0);
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`/readyz did not answer 200 within 30 s (last status ${status})`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await probe.destroy();
  }
}

/**
 * BENCH_FLOOR=1: the detokenize load, as many processes and clients, against each stand-in in turn. What they
 * reach is this machine's ceiling for any vault on node:http, and on Express, before a byte of the vault's work.
 */
async function runFloor(options: Options, env: NodeJS.ProcessEnv, apiKey: string): Promise<PhaseResult[]> {
  const results: PhaseResult[] = [];
  for (const kind of STAND_IN_KINDS) {
    const port = await freePort();
    const standIn = startCluster(options, { ...env, PORT: String(port) }, ['--stand-in', kind]);
    const client = openClient(port, options.concurrency);
    const pacedClient = openClient(port, PACED_CONNECTIONS);
    const halt = new AbortController();
    standIn.child.once('exit', () => halt.abort(`the ${kind} stand-in exited`));
    try {
      const pids = await standIn.ready;
      await waitUntilReady(port);
      const phase = { pids, halt: halt.signal };
      results.push(await runPhase(`floor:${kind}`, new StandInWorkload(client, apiKey), options, () => 'detokenize', phase));
      // The same answer-at-once server at the latency run's pace: what one request costs when requests come apart.
      results.push(await runPacedPhase(`floor:${kind}@1000/s`, new StandInWorkload(pacedClient, apiKey), options, () => 'detokenize', phase, PACED_RATE));
    } finally {
      await Promise.all([client.destroy(), pacedClient.destroy()]);
      await stopCluster(standIn.child);
    }
  }
  return results;
}

async function main(): Promise<number> {
  const options = readOptions(process.env);
  const databaseUrl = await recreateDatabase(options.adminUrl, options.database);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'cardvault-bench-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    VAULT_DATA_DIR: dataDir,
    KMS_PROVIDER: 'local',
    LOCAL_KMS_KEY_FILE: path.join(dataDir, 'local-kms.key'),
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    // One payments key at thousands of detokenizes a second is far over its 600/min: measure the vault, not the limiter.
    RATE_LIMITS: 'off',
    // As the production API: the account-updater worker runs in its own Deployment.
    UPDATER_WORKER: 'off',
  };
  delete env.NODE_ENV;
  const cluster = startCluster(options, env);
  const client = openClient(port, options.concurrency);
  const pacedClient = openClient(port, PACED_CONNECTIONS);
  const halt = new AbortController();
  cluster.child.once('exit', () => halt.abort('the vault exited'));
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      halt.abort('the bench stopped');
      await Promise.all([client.destroy(), pacedClient.destroy()]);
      await stopCluster(cluster.child);
      await rm(dataDir, { recursive: true, force: true });
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      halt.abort(`interrupted by ${signal}`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    const vault = { pids: await cluster.ready, halt: halt.signal };
    await waitUntilReady(port);
    const keys = await readApiKeys(dataDir);
    const workload = new Workload(client, keys, options.idempotencyKeys);
    const pacedWorkload = workload.withClient(pacedClient);

    // The vault's processes sit idle meanwhile: the stand-ins have the machine to themselves.
    const results = options.floor ? await runFloor(options, env, keys.payments) : [];
    // Both routes, unmeasured, until V8 has compiled them: else the first run would measure the compiler too.
    const warmUpPick = () => (workload.vaulted > 0 && randomInt(2) === 0 ? 'detokenize' : 'tokenize');
    const warmUpFailures = await warmUp(workload, options.concurrency, options.vaultWarmupSeconds, warmUpPick, vault.halt);
    if (warmUpFailures > 0) throw new Error(`${warmUpFailures} requests failed during the warm-up`);
    results.push(await runPhase('tokenize', workload, options, () => 'tokenize', vault));
    if (!options.skipAnalyze) await analyze(databaseUrl);
    results.push(await runPhase('detokenize', workload, options, () => 'detokenize', vault));
    results.push(await runPhase('mixed', workload, options, () => (randomInt(2) === 0 ? 'tokenize' : 'detokenize'), vault));
    // The latency target is stated at a steady 1,000 requests a second, not at saturation.
    results.push(await runPacedPhase('mixed@1000/s', pacedWorkload, options, () => (randomInt(2) === 0 ? 'tokenize' : 'detokenize'), vault, PACED_RATE));
    process.stdout.write('rate limits: off (RATE_LIMITS=off), so these figures carry no limiter cost\n');
    printReport(options, results);
    return results.some((r) => r.errors.size > 0) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : 'unknown error'}\n`);
    process.exit(1);
  },
);
