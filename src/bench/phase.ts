// One measured run: closed-loop lanes driving the workload, latencies recorded and summarised as percentiles.
import { watchCpu, type CpuUsed } from './cpu-usage';
import type { Options } from './options';
import type { Op } from './workload';

/** Anything that runs one operation and resolves with undefined, or a printable failure name. */
export interface Runner {
  run(op: Op): Promise<string | undefined>;
}

export interface OpStats {
  opsPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

export interface PhaseResult {
  name: string;
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
    opsPerSecond: (sorted.length - errors) / elapsedSeconds,
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    errors,
  };
}

/**
 * Unmeasured closed-loop load for `seconds`, before any run: the vault's processes start cold, and a run measured
 * while V8 still compiles their hot paths shows the compiler, not the vault at work. Resolves with the number of
 * operations that failed (none, on a healthy vault).
 */
export async function warmUp(workload: Runner, concurrency: number, seconds: number, pick: () => Op, halt: AbortSignal): Promise<number> {
  const stopAt = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let failed = 0;
  const lane = async () => {
    while (process.hrtime.bigint() < stopAt && !halt.aborted) {
      if (await workload.run(pick())) failed += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  if (halt.aborted) throw new Error(`${String(halt.reason)} during the warm-up`);
  return failed;
}

/**
 * Closed loop: `concurrency` lanes each send a request as soon as the last one answers. Requests that start in
 * the warm-up are not recorded; the measured window is from its end to the last measured answer.
 */
export async function runPhase(
  name: string,
  workload: Runner,
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
  const cpuUsed = watchCpu(options.warmupSeconds * 1000, (options.warmupSeconds + options.seconds) * 1000, vault.pids);

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
  const cpu = cpuUsed();

  const elapsedSeconds = Number(lastAnswer - measureFrom) / 1e9;
  const byOp: Partial<Record<Op, OpStats>> = {};
  for (const op of ['tokenize', 'detokenize'] as const) {
    if (latencies[op].length > 0) byOp[op] = summarize(latencies[op], failures[op], elapsedSeconds);
  }
  const total = summarize([...latencies.tokenize, ...latencies.detokenize], failures.tokenize + failures.detokenize, elapsedSeconds);
  return { name, total, byOp, errors, cpu };
}

/**
 * Open loop at a fixed rate: a request starts every 1/rate seconds whether or not earlier ones have answered, and
 * each latency is measured from when it was due, so a stall shows up in the percentiles instead of slowing the
 * load (no coordinated omission).
 */
export async function runPacedPhase(
  name: string,
  workload: Runner,
  options: Options,
  pick: () => Op,
  vault: { pids: number[]; halt: AbortSignal },
  ratePerSecond: number,
): Promise<PhaseResult> {
  const now = () => process.hrtime.bigint();
  const intervalNs = BigInt(Math.round(1e9 / ratePerSecond));
  const start = now();
  const measureFrom = start + BigInt(options.warmupSeconds * 1e9);
  const stopAt = measureFrom + BigInt(options.seconds * 1e9);
  const latencies: Record<Op, number[]> = { tokenize: [], detokenize: [] };
  const failures: Record<Op, number> = { tokenize: 0, detokenize: 0 };
  const errors = new Map<string, number>();
  const cpuUsed = watchCpu(options.warmupSeconds * 1000, (options.warmupSeconds + options.seconds) * 1000, vault.pids);
  const inFlight: Promise<void>[] = [];

  const one = async (due: bigint) => {
    const op = pick();
    // Timers wake up to a millisecond early or late. Late, the latency still counts from when the request was
    // due; early, from when it was sent, so a quick answer cannot come out faster than it was.
    const sent = now();
    const failure = await workload.run(op);
    if (due < measureFrom) return;
    latencies[op].push(Number(now() - (sent < due ? sent : due)) / 1e6);
    if (failure) {
      failures[op] += 1;
      const key = `${name}: ${failure}`;
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
  };
  for (let due = start; due < stopAt && !vault.halt.aborted; due += intervalNs) {
    const wait = Number(due - now()) / 1e6;
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    inFlight.push(one(due));
  }
  await Promise.all(inFlight);
  if (vault.halt.aborted) throw new Error(`${String(vault.halt.reason)} during the ${name} run`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const cpu = cpuUsed();

  const byOp: Partial<Record<Op, OpStats>> = {};
  for (const op of ['tokenize', 'detokenize'] as const) {
    if (latencies[op].length > 0) byOp[op] = summarize(latencies[op], failures[op], options.seconds);
  }
  const total = summarize([...latencies.tokenize, ...latencies.detokenize], failures.tokenize + failures.detokenize, options.seconds);
  return { name, total, byOp, errors, cpu };
}
