// Where the CPU went: clock ticks of every process from /proc (Linux), so the load generator's share shows.
import { readdirSync, readFileSync } from 'node:fs';

interface CpuSnapshot {
  at: bigint;
  processes: Map<number, { comm: string; ticks: number }>;
  /** Interrupt time is charged to no process: on loopback it is mostly TCP. */
  irq: number;
  busy: number;
  idle: number;
}

/** Cores used on average over a window, split by who used them. */
export interface CpuUsed {
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

/**
 * Snapshots /proc `fromMs` and `toMs` from now. The returned function cancels any snapshot still pending and
 * gives the usage between the two, or undefined if the window has not closed or /proc could not be read.
 */
export function watchCpu(fromMs: number, toMs: number, vaultPids: readonly number[]): () => CpuUsed | undefined {
  let start: CpuSnapshot | undefined;
  let used: CpuUsed | undefined;
  const opened = setTimeout(() => (start = cpuSnapshot()), fromMs);
  const closed = setTimeout(() => {
    const end = cpuSnapshot();
    used = start && end && cpuUsedBetween(start, end, vaultPids);
  }, toMs);
  return () => {
    clearTimeout(opened);
    clearTimeout(closed);
    return used;
  };
}
