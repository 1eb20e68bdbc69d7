// The bench's open-loop run: latencies count from when a request was due (a stall cannot hide), and never from
// before it was sent (an early timer cannot make an answer look faster than it was).
import { readOptions } from '../../src/bench/options';
import { runPacedPhase, type Runner } from '../../src/bench/phase';
import type { Op } from '../../src/bench/workload';

const options = { ...readOptions({}), warmupSeconds: 0, seconds: 0.4 };
const vault = { pids: [] as number[], halt: new AbortController().signal };
const detokenize = (): Op => 'detokenize';

describe('runPacedPhase', () => {
  it('never reports a latency below zero, however early its timer sends a request', async () => {
    const answersAtOnce: Runner = { run: async () => undefined };
    const result = await runPacedPhase('instant', answersAtOnce, options, detokenize, vault, 1000);
    expect(result.total.errors).toBe(0);
    expect(result.total.opsPerSecond).toBeGreaterThan(900);
    // Before the fix, most of these answers came out 0.2–0.5 ms before they were asked for.
    expect(result.total.p50).toBeGreaterThanOrEqual(0);
  });

  it('counts a stall of the client from when each request was due, not from when it was finally sent', async () => {
    let calls = 0;
    const stallsOnce: Runner = {
      run: async () => {
        // The 100th request blocks the event loop for 60 ms: the ~60 requests due meanwhile go out late.
        if (++calls === 100) {
          const until = Date.now() + 60;
          while (Date.now() < until);
        }
        return undefined;
      },
    };
    const result = await runPacedPhase('stall', stallsOnce, options, detokenize, vault, 1000);
    // 60 of 400 requests (15%) waited 0–60 ms for the stall: the p95 shows it (measured from sending, it would be ~0).
    expect(result.total.p95).toBeGreaterThan(10);
  });
});
