// `npm run bench`: the vault as deployed (cluster workers on PostgreSQL) under closed-loop load; prints ops/s and latency.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { ClusterReady } from './cluster';

const BENCH_DATABASE = 'cardvault_bench';
const TARGET = { tokenize: 2000, detokenize: 3000, p99Ms: 50 };
/** Visa's documented test BIN: a generated number can never be someone's card. */
const TEST_BIN = '411111';
const EXPIRY = { exp_month: 12, exp_year: new Date().getUTCFullYear() + 3 };
const DETOKENIZE_BODY = JSON.stringify({ purpose: 'authorization' });

type Op = 'tokenize' | 'detokenize';

interface Options {
  adminUrl: string;
  processes: number;
  concurrency: number;
  warmupSeconds: number;
  seconds: number;
  cpuProfileDir: string | undefined;
  /** BENCH_SKIP_ANALYZE=1 shows the vault on a database without planner statistics. */
  skipAnalyze: boolean;
}

function readOptions(env: NodeJS.ProcessEnv): Options {
  const int = (name: string, fallback: number, min: number, max: number) => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}`);
    return value;
  };
  return {
    adminUrl: env.BENCH_ADMIN_DATABASE_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/postgres',
    processes: int('BENCH_VAULT_PROCESSES', os.availableParallelism(), 1, 64),
    concurrency: int('BENCH_CONCURRENCY', 32, 1, 4096),
    warmupSeconds: int('BENCH_WARMUP_SECONDS', 3, 0, 600),
    seconds: int('BENCH_SECONDS', 10, 1, 3600),
    cpuProfileDir: env.BENCH_VAULT_CPU_PROF?.trim() || undefined,
    skipAnalyze: int('BENCH_SKIP_ANALYZE', 0, 0, 1) === 1,
  };
}

/** A fresh database each run: the figures never depend on what an earlier run left behind. */
async function recreateDatabase(adminUrl: string): Promise<string> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${BENCH_DATABASE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${BENCH_DATABASE}`;
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
function startCluster(options: Options, env: NodeJS.ProcessEnv): { child: ChildProcess; ready: Promise<number[]> } {
  const profile = options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [];
  const child = spawn(process.execPath, [...profile, path.join(__dirname, 'cluster.js'), '--workers', String(options.processes)], {
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

interface Reply {
  status: number;
  body: string;
}

function send(agent: http.Agent | false, port: number, method: string, urlPath: string, apiKey?: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = http.request({ agent, host: '127.0.0.1', port, method, path: urlPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitUntilReady(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = await send(false, port, 'GET', '/readyz').then((r) => r.status, () => 0);
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`/readyz did not answer 200 within 30 s (last status ${status})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Luhn-completes TEST_BIN + 9 random digits; `issued` keeps every number unique within the run. */
function freshTestPan(issued: Set<string>): string {
  for (;;) {
    const body = TEST_BIN + String(randomInt(1_000_000_000)).padStart(9, '0');
    let sum = 0;
    for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
      let digit = body.charCodeAt(i) - 48;
      if (double && (digit *= 2) > 9) digit -= 9;
      sum += digit;
    }
    const pan = body + String((10 - (sum % 10)) % 10);
    if (!issued.has(pan)) {
      issued.add(pan);
      return pan;
    }
  }
}

/** Only the problem `code` (a closed set) or a socket error code is ever printed: never a body, PAN or key. */
function failureName(op: Op, reply: Reply | undefined, err?: unknown): string {
  if (!reply) {
    const code = (err as { code?: unknown })?.code;
    return `${op} client ${typeof code === 'string' && /^[A-Z_]{1,40}$/.test(code) ? code : 'error'}`;
  }
  let code = 'unparsed';
  try {
    const parsed = (JSON.parse(reply.body) as { code?: unknown }).code;
    if (typeof parsed === 'string' && /^[a-z_]{1,40}$/.test(parsed)) code = parsed;
  } catch {
    // not a problem document; the status says enough
  }
  return `${op} ${reply.status} ${code}`;
}

interface Card {
  token: string;
  pan: string;
}

/** The operations against a running vault; `cards` grows with every tokenization and feeds detokenize. */
class Workload {
  readonly cards: Card[] = [];
  readonly #issued = new Set<string>();

  constructor(
    private readonly agent: http.Agent,
    private readonly port: number,
    private readonly keys: { merchant: string; payments: string },
  ) {}

  /** Runs one operation; resolves with undefined on success, else a printable failure name. */
  async run(op: Op): Promise<string | undefined> {
    try {
      return op === 'tokenize' ? await this.tokenize() : await this.detokenize();
    } catch (err) {
      return failureName(op, undefined, err);
    }
  }

  private async tokenize(): Promise<string | undefined> {
    const pan = freshTestPan(this.#issued);
    const body = JSON.stringify({ card: { number: pan, ...EXPIRY } });
    const reply = await send(this.agent, this.port, 'POST', '/v1/tokens', this.keys.merchant, body);
    // 200 would mean the vault converged on an existing card: not a fresh tokenization.
    if (reply.status !== 201) return failureName('tokenize', reply);
    this.cards.push({ token: (JSON.parse(reply.body) as { token: string }).token, pan });
    return undefined;
  }

  private async detokenize(): Promise<string | undefined> {
    const card = this.cards[Math.floor(Math.random() * this.cards.length)];
    if (!card) return 'detokenize no-token-yet';
    const reply = await send(this.agent, this.port, 'POST', `/v1/tokens/${card.token}/detokenize`, this.keys.payments, DETOKENIZE_BODY);
    if (reply.status !== 200) return failureName('detokenize', reply);
    const revealed = JSON.parse(reply.body) as { card?: { number?: string } };
    return revealed.card?.number === card.pan ? undefined : 'detokenize 200 wrong_card';
  }
}

/** Where the CPU went: clock ticks of every process from /proc (Linux), so the load generator's share shows. */
interface CpuSnapshot {
  at: bigint;
  processes: Map<number, { comm: string; ticks: number }>;
  /** Interrupt time is charged to no process: on loopback it is mostly TCP. */
  irq: number;
  busy: number;
  idle: number;
}

/** Cores used on average over a window, split by who used them. */
interface CpuUsed {
  bench: number;
  vault: number;
  postgres: number;
  irq: number;
  other: number;
  /** Everything else, short-lived processes included; the busiest by command name, e.g. `jest 0.40`. */
  others: string;
  idle: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function readProcesses(): Map<number, { comm: string; ticks: number }> {
  const processes = new Map<number, { comm: string; ticks: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      // utime and stime, with those of waited-for children (cutime, cstime) left out.
      processes.set(Number(name), { comm: stat.slice(stat.indexOf('(') + 1, close), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended between readdir and read
    }
  }
  return processes;
}

function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const [, ...jiffies] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = jiffies;
    const busy = user + nice + system + irq + softirq + steal;
    return { at: process.hrtime.bigint(), processes: readProcesses(), irq: irq + softirq, busy, idle: idle + iowait };
  } catch {
    return undefined;
  }
}

function cpuUsedBetween(from: CpuSnapshot, to: CpuSnapshot, vaultPids: readonly number[]): CpuUsed {
  const cores = (ticks: number) => ticks / TICKS_PER_SECOND / (Number(to.at - from.at) / 1e9);
  const used = { bench: 0, vault: 0, postgres: 0, other: 0 };
  const others = new Map<string, number>();
  for (const [pid, { comm, ticks }] of to.processes) {
    const delta = ticks - (from.processes.get(pid)?.ticks ?? 0);
    if (delta <= 0) continue;
    if (pid === process.pid) used.bench += delta;
    else if (vaultPids.includes(pid)) used.vault += delta;
    else if (comm === 'postgres') used.postgres += delta;
    else {
      used.other += delta;
      others.set(comm, (others.get(comm) ?? 0) + delta);
    }
  }
  const busiest = [...others].sort((a, b) => b[1] - a[1]).slice(0, 3);
  const irq = to.irq - from.irq;
  return {
    bench: cores(used.bench),
    vault: cores(used.vault),
    postgres: cores(used.postgres),
    irq: cores(irq),
    other: cores(Math.max(0, to.busy - from.busy - irq - used.bench - used.vault - used.postgres)),
    others: busiest.map(([comm, ticks]) => `${comm.replace(/[^\w./:-]/g, '?')} ${cores(ticks).toFixed(2)}`).join(', '),
    idle: cores(to.idle - from.idle),
  };
}

interface OpStats {
  ops: number;
  opsPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

interface PhaseResult {
  name: string;
  elapsedSeconds: number;
  total: OpStats;
  byOp: Partial<Record<Op, OpStats>>;
  errors: Map<string, number>;
  cpu: CpuUsed | undefined;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

function summarize(latenciesMs: number[], errors: number, elapsedSeconds: number): OpStats {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    ops: sorted.length,
    opsPerSecond: (sorted.length - errors) / elapsedSeconds,
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    errors,
  };
}

/**
 * Closed loop: `concurrency` lanes each send a request as soon as the last one answers. Requests that start in
 * the warm-up are not recorded; the measured window is from its end to the last measured answer.
 */
async function runPhase(
  name: string,
  workload: Workload,
  options: Options,
  pick: () => Op,
  vault: { pids: number[]; halt: AbortSignal },
): Promise<PhaseResult> {
  const now = () => process.hrtime.bigint();
  const measureFrom = now() + BigInt(options.warmupSeconds * 1e9);
  const stopAt = measureFrom + BigInt(options.seconds * 1e9);
  const latencies: Record<Op, number[]> = { tokenize: [], detokenize: [] };
  const failures: Record<Op, number> = { tokenize: 0, detokenize: 0 };
  const errors = new Map<string, number>();
  let lastAnswer = measureFrom;

  let cpuStart: CpuSnapshot | undefined;
  let cpu: CpuUsed | undefined;
  const cpuFrom = setTimeout(() => (cpuStart = cpuSnapshot()), options.warmupSeconds * 1000);
  const cpuTo = setTimeout(() => {
    const end = cpuSnapshot();
    cpu = cpuStart && end && cpuUsedBetween(cpuStart, end, vault.pids);
  }, (options.warmupSeconds + options.seconds) * 1000);

  const lane = async () => {
    for (let started = now(); started < stopAt && !vault.halt.aborted; started = now()) {
      const op = pick();
      const failure = await workload.run(op);
      if (started < measureFrom) continue;
      const answered = now();
      if (answered > lastAnswer) lastAnswer = answered;
      latencies[op].push(Number(answered - started) / 1e6);
      if (failure) {
        failures[op] += 1;
        const key = `${name}: ${failure}`;
        errors.set(key, (errors.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  if (vault.halt.aborted) throw new Error(`${String(vault.halt.reason)} during the ${name} run`);
  // Let the CPU snapshot at the end of the window land before reading it.
  await new Promise((resolve) => setTimeout(resolve, 50));
  clearTimeout(cpuFrom);
  clearTimeout(cpuTo);

  const elapsedSeconds = Number(lastAnswer - measureFrom) / 1e9;
  const byOp: Partial<Record<Op, OpStats>> = {};
  for (const op of ['tokenize', 'detokenize'] as const) {
    if (latencies[op].length > 0) byOp[op] = summarize(latencies[op], failures[op], elapsedSeconds);
  }
  const total = summarize([...latencies.tokenize, ...latencies.detokenize], failures.tokenize + failures.detokenize, elapsedSeconds);
  return { name, elapsedSeconds, total, byOp, errors, cpu };
}

const fixed = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

function printResults(options: Options, results: PhaseResult[]): void {
  const rows: Array<[string, OpStats]> = [];
  for (const r of results) {
    rows.push([r.name, r.total]);
    if (Object.keys(r.byOp).length > 1) for (const [op, s] of Object.entries(r.byOp)) rows.push([`  ${r.name}.${op}`, s]);
  }
  const cpuModel = os.cpus()[0]?.model.trim() ?? 'unknown';
  const out = [
    `cardvault bench: ${options.processes} vault process(es), concurrency ${options.concurrency}, ` +
      `warm-up ${options.warmupSeconds} s, measured ${options.seconds} s per run`,
    `database: PostgreSQL ${BENCH_DATABASE}, created afresh; ${options.skipAnalyze ? 'NOT analyzed' : 'ANALYZE after the tokenize run'}`,
    `machine: ${os.availableParallelism()} CPUs, ${cpuModel}, node ${process.version}`,
    '',
    `${'run'.padEnd(22)}${'ops/s'.padStart(9)}${'p50 ms'.padStart(9)}${'p95 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'errors'.padStart(8)}`,
    ...rows.map(([label, s]) => {
      const cells = [fixed(s.opsPerSecond, 0), fixed(s.p50), fixed(s.p95), fixed(s.p99)].map((cell) => cell.padStart(9));
      return `${label.padEnd(22)}${cells.join('')}${String(s.errors).padStart(8)}`;
    }),
    '',
    `CPU in each measured window: cores used (of ${os.availableParallelism()}), and CPU µs per operation`,
    ...results.map((r) => {
      if (!r.cpu) return `  ${r.name.padEnd(11)} (not measured)`;
      const perOp = (cores: number) => `${fixed(cores, 2)} (${fixed((cores * 1e6) / (r.total.opsPerSecond || NaN), 0)} µs/op)`;
      return (
        `  ${r.name.padEnd(11)} vault ${perOp(r.cpu.vault)}  postgres ${perOp(r.cpu.postgres)}  load generator ${perOp(r.cpu.bench)}  ` +
        `kernel irq ${fixed(r.cpu.irq, 2)}  other ${fixed(r.cpu.other, 2)}${r.cpu.other >= 0.1 ? ` (${r.cpu.others})` : ''}  ` +
        `idle ${fixed(r.cpu.idle, 2)}`
      );
    }),
  ];
  const noisy = results.filter((r) => r.cpu && r.cpu.other >= 0.2).map((r) => r.name);
  if (noisy.length > 0) {
    out.push(`WARNING: other work on this machine took >= 0.2 cores during ${noisy.join(', ')}; those figures understate the vault.`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

/** A missed target is reported, not failed on: it is a finding about the vault, not a broken bench. */
function verdict(results: PhaseResult[]): string[] {
  const lines: string[] = [];
  for (const r of results) {
    const floor = r.name === 'tokenize' ? TARGET.tokenize : r.name === 'detokenize' ? TARGET.detokenize : undefined;
    if (floor === undefined) continue;
    const ok = r.total.opsPerSecond >= floor && r.total.p99 <= TARGET.p99Ms;
    lines.push(`${r.name}: ${ok ? 'meets' : 'MISSES'} the target (>= ${floor} ops/s, p99 <= ${TARGET.p99Ms} ms)`);
  }
  return lines;
}

function jsonSummary(options: Options, results: PhaseResult[]): string {
  const stats = (s: OpStats, cpu?: CpuUsed) => ({
    ops_per_s: Math.round(s.opsPerSecond),
    p50_ms: Number(fixed(s.p50, 2)),
    p95_ms: Number(fixed(s.p95, 2)),
    p99_ms: Number(fixed(s.p99, 2)),
    errors: s.errors,
    ...(cpu && {
      cpu_us_per_op: Object.fromEntries(
        (['vault', 'postgres', 'bench'] as const).map((who) => [
          who === 'bench' ? 'load_generator' : who,
          Math.round((cpu[who] * 1e6) / s.opsPerSecond),
        ]),
      ),
      other_cores: Number(fixed(cpu.other, 2)),
    }),
  });
  return JSON.stringify({
    machine: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model.trim(), node: process.version },
    vault_processes: options.processes,
    concurrency: options.concurrency,
    seconds: options.seconds,
    analyzed: !options.skipAnalyze,
    results: Object.fromEntries(
      results.flatMap((r) => [
        [r.name, stats(r.total, r.cpu)],
        ...(Object.keys(r.byOp).length > 1 ? Object.entries(r.byOp).map(([op, s]) => [`${r.name}.${op}`, stats(s)]) : []),
      ]),
    ),
  });
}

async function main(): Promise<number> {
  const options = readOptions(process.env);
  const databaseUrl = await recreateDatabase(options.adminUrl);
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
  };
  delete env.NODE_ENV;
  const cluster = startCluster(options, env);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const halt = new AbortController();
  cluster.child.once('exit', () => halt.abort('the vault exited'));
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      halt.abort('the bench stopped');
      agent.destroy();
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
    const workload = new Workload(agent, port, await readApiKeys(dataDir));

    const results = [await runPhase('tokenize', workload, options, () => 'tokenize', vault)];
    if (!options.skipAnalyze) await analyze(databaseUrl);
    results.push(await runPhase('detokenize', workload, options, () => 'detokenize', vault));
    results.push(await runPhase('mixed', workload, options, () => (Math.random() < 0.5 ? 'tokenize' : 'detokenize'), vault));
    printResults(options, results);
    process.stdout.write(`\n${verdict(results).join('\n')}\n`);
    process.stdout.write(`BENCH_JSON ${jsonSummary(options, results)}\n`);

    const errors = results.flatMap((r) => [...r.errors]);
    if (errors.length > 0) {
      const list = errors.map(([name, n]) => `  ${name}: ${n}`).join('\n');
      process.stdout.write(`\nTHE BENCH HAD ERRORS; its figures are not valid:\n${list}\n`);
      return 1;
    }
    return 0;
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
