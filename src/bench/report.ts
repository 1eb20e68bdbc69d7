// What the bench prints: the results table, CPU per run, the targets, the BENCH_JSON line and any errors.
import os from 'node:os';
import type { CpuUsed } from './cpu-usage';
import type { Options } from './options';
import type { OpStats, PhaseResult } from './phase';

const TARGET = { tokenize: 2500, detokenize: 4000, p99Ms: 50 };

/** A floor run (BENCH_FLOOR=1): its pids are a stand-in's, not the vault's. */
const isFloor = (name: string) => name.startsWith('floor:');

/** A run at a fixed rate (open loop), named for it: 'mixed@1000/s'. */
const isPaced = (name: string) => name.includes('@');

/** The server's CPU per operation (the vault's, or a stand-in's), in whole µs. */
const cpuPerOp = (r: PhaseResult) => (r.cpu && r.total.opsPerSecond > 0 ? Math.round((r.cpu.vault * 1e6) / r.total.opsPerSecond) : undefined);

const fixed = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

const machine = () => ({ cpus: os.availableParallelism(), model: os.cpus()[0]?.model.trim(), node: process.version });

interface Row {
  name: string;
  /** One operation of a run that mixed them, listed under the run's total. */
  perOp: boolean;
  stats: OpStats;
  cpu: CpuUsed | undefined;
}

function rows(results: PhaseResult[]): Row[] {
  return results.flatMap((r) => [
    { name: r.name, perOp: false, stats: r.total, cpu: r.cpu },
    ...(Object.keys(r.byOp).length > 1
      ? Object.entries(r.byOp).map(([op, stats]) => ({ name: `${r.name}.${op}`, perOp: true, stats, cpu: undefined }))
      : []),
  ]);
}

function table(options: Options, results: PhaseResult[]): string[] {
  const { cpus, model, node } = machine();
  const out = [
    `cardvault bench: ${options.processes} vault process(es), concurrency ${options.concurrency}, ` +
      `warm-up ${options.vaultWarmupSeconds} s before the first run and ${options.warmupSeconds} s before each, measured ${options.seconds} s per run`,
    `database: PostgreSQL ${options.database}, created afresh; ${options.skipAnalyze ? 'NOT analyzed' : 'ANALYZE after the tokenize run'}; ` +
      `tokenize ${options.idempotencyKeys ? 'with' : 'without'} an Idempotency-Key`,
    `machine: ${cpus} CPUs, ${model ?? 'unknown'}, node ${node}`,
    '',
    `${'run'.padEnd(22)}${'ops/s'.padStart(9)}${'p50 ms'.padStart(9)}${'p95 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'errors'.padStart(8)}`,
    ...rows(results).map(({ name, perOp, stats: s }) => {
      const cells = [fixed(s.opsPerSecond, 0), fixed(s.p50), fixed(s.p95), fixed(s.p99)].map((cell) => cell.padStart(9));
      return `${((perOp ? '  ' : '') + name).padEnd(22)}${cells.join('')}${String(s.errors).padStart(8)}`;
    }),
    '',
    `CPU in each measured window: cores used (of ${cpus}), and CPU µs per operation`,
    ...results.map((r) => {
      if (!r.cpu) return `  ${r.name.padEnd(11)} (not measured)`;
      const perOp = (cores: number) => `${fixed(cores, 2)} (${fixed((cores * 1e6) / (r.total.opsPerSecond || NaN), 0)} µs/op)`;
      const server = isFloor(r.name) ? 'stand-in' : 'vault';
      return (
        `  ${r.name.padEnd(11)} ${server} ${perOp(r.cpu.vault)}  postgres ${perOp(r.cpu.postgres)}  load generator ${perOp(r.cpu.bench)}  ` +
        `kernel irq ${fixed(r.cpu.irq, 2)}  other ${fixed(r.cpu.other, 2)}${r.cpu.other >= 0.1 ? ` (${r.cpu.others})` : ''}  ` +
        `idle ${fixed(r.cpu.idle, 2)}`
      );
    }),
  ];
  const noisy = results.filter((r) => r.cpu && r.cpu.other >= 0.2).map((r) => r.name);
  if (noisy.length > 0) {
    out.push(`WARNING: other work on this machine took >= 0.2 cores during ${noisy.join(', ')}; those figures understate the vault.`);
  }
  return out;
}

/**
 * The targets as issue 6 states them: throughput at saturation, p99 at a steady 1,000 req/s. A closed-loop
 * run's p99 is printed above but not judged: at saturation it is set by the client count (clients / ops/s).
 * A missed target is reported, not failed on: it is a finding about the vault, not a broken bench.
 */
function verdict(results: PhaseResult[]): string[] {
  const lines: string[] = [];
  for (const r of results) {
    if (isPaced(r.name) && !isFloor(r.name)) {
      lines.push(`${r.name}: p99 ${fixed(r.total.p99)} ms ${r.total.p99 <= TARGET.p99Ms ? 'meets' : 'MISSES'} the target (<= ${TARGET.p99Ms} ms)`);
      continue;
    }
    const floor = r.name === 'tokenize' ? TARGET.tokenize : r.name === 'detokenize' ? TARGET.detokenize : undefined;
    if (floor === undefined) continue;
    const ops = Math.round(r.total.opsPerSecond);
    lines.push(`${r.name}: ${ops} ops/s ${ops >= floor ? 'meets' : 'MISSES'} the target (>= ${floor} ops/s)`);
  }
  const detokenize = results.find((r) => r.name === 'detokenize')?.total.opsPerSecond;
  for (const floor of results.filter((r) => isFloor(r.name) && !isPaced(r.name))) {
    if (detokenize === undefined || !(floor.total.opsPerSecond > 0)) continue;
    const share = Math.round((100 * detokenize) / floor.total.opsPerSecond);
    lines.push(`detokenize: ${Math.round(detokenize)} ops/s is ${share}% of ${floor.name} (${Math.round(floor.total.opsPerSecond)}/s, answering at once)`);
  }
  // The same stand-in, saturated and paced: how much more one request costs this machine when requests come apart.
  for (const paced of results.filter((r) => isFloor(r.name) && isPaced(r.name))) {
    const saturated = results.find((r) => r.name === paced.name.slice(0, paced.name.indexOf('@')));
    const atPace = cpuPerOp(paced);
    const atSaturation = saturated && cpuPerOp(saturated);
    if (atPace === undefined || atSaturation === undefined) continue;
    lines.push(
      `${paced.name}: the stand-in spent ${atPace} µs of CPU per request, ${fixed(atPace / atSaturation)} times the ${atSaturation} µs it spent saturated`,
    );
  }
  return lines;
}

function jsonSummary(options: Options, results: PhaseResult[]): string {
  const stats = (name: string, s: OpStats, cpu: CpuUsed | undefined) => ({
    ops_per_s: Math.round(s.opsPerSecond),
    p50_ms: Number(fixed(s.p50, 2)),
    p95_ms: Number(fixed(s.p95, 2)),
    p99_ms: Number(fixed(s.p99, 2)),
    errors: s.errors,
    ...(cpu && {
      cpu_us_per_op: Object.fromEntries(
        (['vault', 'postgres', 'bench'] as const).map((who) => [
          who === 'bench' ? 'load_generator' : who === 'vault' && isFloor(name) ? 'stand_in' : who,
          Math.round((cpu[who] * 1e6) / s.opsPerSecond),
        ]),
      ),
      other_cores: Number(fixed(cpu.other, 2)),
    }),
  });
  return JSON.stringify({
    machine: machine(),
    vault_processes: options.processes,
    concurrency: options.concurrency,
    seconds: options.seconds,
    vault_warmup_seconds: options.vaultWarmupSeconds,
    analyzed: !options.skipAnalyze,
    idempotency_keys: options.idempotencyKeys,
    floor: options.floor,
    results: Object.fromEntries(rows(results).map((row) => [row.name, stats(row.name, row.stats, row.cpu)])),
  });
}

export function printReport(options: Options, results: PhaseResult[]): void {
  process.stdout.write(`${table(options, results).join('\n')}\n`);
  process.stdout.write(`\n${verdict(results).join('\n')}\n`);
  process.stdout.write(`BENCH_JSON ${jsonSummary(options, results)}\n`);
  const errors = results.flatMap((r) => [...r.errors]);
  if (errors.length > 0) {
    const list = errors.map(([name, n]) => `  ${name}: ${n}`).join('\n');
    process.stdout.write(`\nTHE BENCH HAD ERRORS; its figures are not valid:\n${list}\n`);
  }
}
