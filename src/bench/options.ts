// The bench's settings: the only reader of its BENCH_* variables.
import os from 'node:os';

/**
 * Dropped and recreated by every run, so it must never be a database anyone else uses: BENCH_DATABASE may
 * only name another one of the bench's own (the test of the bench uses cardvault_bench_test).
 */
export const BENCH_DATABASE = 'cardvault_bench';
const BENCH_DATABASE_NAME = /^cardvault_bench(_[a-z0-9]+)*$/;

export interface Options {
  adminUrl: string;
  /** The database the run drops and recreates (BENCH_DATABASE, cardvault_bench…). */
  database: string;
  processes: number;
  concurrency: number;
  /** Unmeasured load before each run, at that run's mix. */
  warmupSeconds: number;
  /** Unmeasured tokenize and detokenize load before the first run, so the JIT has compiled the vault's hot paths. */
  vaultWarmupSeconds: number;
  seconds: number;
  cpuProfileDir: string | undefined;
  /** BENCH_SKIP_ANALYZE=1 shows the vault on a database without planner statistics. */
  skipAnalyze: boolean;
  /** BENCH_IDEMPOTENCY_KEYS=1: every tokenize carries a fresh Idempotency-Key, as a retrying backend sends. */
  idempotencyKeys: boolean;
  /** BENCH_FLOOR=1: first the same detokenize load against stand-ins that answer at once (stand-in.ts). */
  floor: boolean;
}

export function readOptions(env: NodeJS.ProcessEnv): Options {
  const int = (name: string, fallback: number, min: number, max: number) => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}`);
    return value;
  };
  const database = env.BENCH_DATABASE?.trim() || BENCH_DATABASE;
  if (!BENCH_DATABASE_NAME.test(database)) throw new Error(`BENCH_DATABASE must be ${BENCH_DATABASE} or begin ${BENCH_DATABASE}_ (the run drops it)`);
  return {
    adminUrl: env.BENCH_ADMIN_DATABASE_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/postgres',
    database,
    processes: int('BENCH_VAULT_PROCESSES', os.availableParallelism(), 1, 64),
    // Requests in flight, as the backends of a busy merchant keep them: at 4,000/s and ~10 ms each, about 40.
    // With 32 the vault sits partly idle waiting on audit batches (README, Performance: both are reported).
    concurrency: int('BENCH_CONCURRENCY', 64, 1, 4096),
    warmupSeconds: int('BENCH_WARMUP_SECONDS', 3, 0, 600),
    // perf over the first run, 3 s into the vault's first load, found V8's optimizing compiler in 28% of the
    // vault's samples at first and 7% six seconds later; the later runs had none (README, the thirteenth machine).
    vaultWarmupSeconds: int('BENCH_VAULT_WARMUP_SECONDS', 10, 0, 600),
    seconds: int('BENCH_SECONDS', 10, 1, 3600),
    cpuProfileDir: env.BENCH_VAULT_CPU_PROF?.trim() || undefined,
    skipAnalyze: int('BENCH_SKIP_ANALYZE', 0, 0, 1) === 1,
    idempotencyKeys: int('BENCH_IDEMPOTENCY_KEYS', 0, 0, 1) === 1,
    floor: int('BENCH_FLOOR', 0, 0, 1) === 1,
  };
}
