// `npm run bench` end to end, shortened: the compiled bench (dist/bench/run.js) starts the vault cluster on a
// database of its own, drives every phase, the floor included, and reports. Its figures are not judged here
// (speed is never asserted by a test); that it runs, measures every phase without an error and reports what it
// measured is.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client } from 'pg';
import { ensureBuilt } from '../support/build';
import { ADMIN_DATABASE_URL, REPO_ROOT } from '../support/env';

const DATABASE = 'cardvault_bench_test';
const PHASES = ['floor:node', 'floor:node@1000/s', 'floor:express', 'floor:express@1000/s', 'tokenize', 'detokenize', 'mixed', 'mixed@1000/s'];

interface Summary {
  vault_processes: number;
  concurrency: number;
  vault_warmup_seconds: number;
  floor: boolean;
  results: Record<string, { ops_per_s: number; p50_ms: number; p95_ms: number; p99_ms: number; errors: number; cpu_us_per_op?: Record<string, number> }>;
}

function runBench(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'bench', 'run.js')], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function dropDatabase(): Promise<void> {
  const admin = new Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

describe('npm run bench', () => {
  let run: Awaited<ReturnType<typeof runBench>>;

  beforeAll(async () => {
    await ensureBuilt();
    run = await runBench({
      BENCH_DATABASE: DATABASE,
      BENCH_ADMIN_DATABASE_URL: ADMIN_DATABASE_URL,
      BENCH_FLOOR: '1',
      BENCH_VAULT_PROCESSES: '2',
      BENCH_CONCURRENCY: '4',
      BENCH_WARMUP_SECONDS: '0',
      BENCH_VAULT_WARMUP_SECONDS: '1',
      BENCH_SECONDS: '1',
    });
  }, 150_000);

  afterAll(dropDatabase);

  it('runs every phase against the vault cluster and the two stand-ins, and exits 0', () => {
    expect({ code: run.code, stderr: run.code === 0 ? '' : run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toContain(`database: PostgreSQL ${DATABASE}, created afresh`);
    expect(run.stdout).toContain('warm-up 1 s before the first run and 0 s before each');
    expect(run.stdout).not.toContain('THE BENCH HAD ERRORS');
  });

  it('reports ops/s and ordered percentiles for each phase, with no errors, in its table and its JSON line', () => {
    const line = run.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
    expect(line).toBeDefined();
    const summary = JSON.parse(line!.slice('BENCH_JSON '.length)) as Summary;
    expect(summary).toMatchObject({ vault_processes: 2, concurrency: 4, vault_warmup_seconds: 1, floor: true });
    for (const phase of PHASES) {
      const r = summary.results[phase];
      expect({ phase, defined: r !== undefined }).toEqual({ phase, defined: true });
      expect(r!.errors).toBe(0);
      expect(r!.ops_per_s).toBeGreaterThan(0);
      expect(r!.p50_ms).toBeGreaterThan(0);
      expect(r!.p50_ms).toBeLessThanOrEqual(r!.p95_ms);
      expect(r!.p95_ms).toBeLessThanOrEqual(r!.p99_ms);
      expect(run.stdout).toMatch(new RegExp(`^${phase.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} +${r!.ops_per_s} `, 'm'));
    }
  });

  it('charges CPU per operation to the vault, PostgreSQL and the load generator, and to each stand-in', () => {
    const summary = JSON.parse(run.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '))!.slice('BENCH_JSON '.length)) as Summary;
    for (const phase of ['tokenize', 'detokenize']) {
      const cpu = summary.results[phase]!.cpu_us_per_op!;
      expect(cpu.vault).toBeGreaterThan(0);
      expect(cpu.postgres).toBeGreaterThan(0);
      expect(cpu.load_generator).toBeGreaterThan(0);
    }
    for (const floor of ['floor:node', 'floor:node@1000/s', 'floor:express', 'floor:express@1000/s']) {
      expect(summary.results[floor]!.cpu_us_per_op!.stand_in).toBeGreaterThan(0);
    }
  });

  it('judges each target and the floor shares in words', () => {
    expect(run.stdout).toMatch(/^tokenize: \d+ ops\/s (meets|MISSES) the target \(>= 2500 ops\/s\)$/m);
    expect(run.stdout).toMatch(/^detokenize: \d+ ops\/s (meets|MISSES) the target \(>= 4000 ops\/s\)$/m);
    expect(run.stdout).toMatch(/^mixed@1000\/s: p99 [\d.]+ ms (meets|MISSES) the target \(<= 50 ms\)$/m);
    expect(run.stdout).toMatch(/^detokenize: \d+ ops\/s is \d+% of floor:express \(/m);
    // A paced floor is not a ceiling to compare throughput with, but what a request costs when requests come apart.
    expect(run.stdout).not.toMatch(/% of floor:[a-z]+@/);
    for (const kind of ['node', 'express']) {
      const line = run.stdout.split('\n').find((l) => l.startsWith(`floor:${kind}@1000/s: the stand-in spent `));
      const summary = JSON.parse(run.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '))!.slice('BENCH_JSON '.length)) as Summary;
      const [paced, saturated] = [summary.results[`floor:${kind}@1000/s`]!, summary.results[`floor:${kind}`]!].map((r) => r.cpu_us_per_op!.stand_in);
      expect(line).toBe(
        `floor:${kind}@1000/s: the stand-in spent ${paced} µs of CPU per request, ${(paced! / saturated!).toFixed(1)} times the ${saturated} µs it spent saturated`,
      );
    }
  });

  it('prints no run of digits as long as a card number, on stdout or in the vault log on stderr', () => {
    expect(run.stdout).not.toMatch(/[0-9]{12}/);
    expect(run.stderr).not.toMatch(/[0-9]{12}/);
  });

  it('refuses a BENCH_DATABASE that is not one of its own, before touching PostgreSQL', async () => {
    const refused = await runBench({ BENCH_DATABASE: 'postgres' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('BENCH_DATABASE must be cardvault_bench');
  });
});
