// The bench's warm-up before its first run: load for the time asked, through every lane, then nothing more.
import { warmUp, type Runner } from '../../src/bench/phase';
import type { Op } from '../../src/bench/workload';

const nextTick = () => new Promise((resolve) => setImmediate(resolve));

describe('warmUp', () => {
  it('keeps every lane busy for the time asked, and sends nothing once it has resolved', async () => {
    const started: Op[] = [];
    let inFlight = 0;
    let mostInFlight = 0;
    const runner: Runner = {
      run: async (op) => {
        started.push(op);
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 2));
        inFlight -= 1;
        return undefined;
      },
    };
    let picks = 0;
    const pick = (): Op => (++picks % 2 === 0 ? 'detokenize' : 'tokenize');
    const began = Date.now();

    const failed = await warmUp(runner, 4, 0.3, pick, new AbortController().signal);

    expect(failed).toBe(0);
    expect(Date.now() - began).toBeGreaterThanOrEqual(290);
    expect(mostInFlight).toBe(4);
    expect(new Set(started)).toEqual(new Set(['tokenize', 'detokenize']));
    const sent = started.length;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(started.length).toBe(sent);
  });

  it('counts the operations that failed', async () => {
    let calls = 0;
    const failsEveryThird: Runner = {
      run: async () => {
        await nextTick();
        return ++calls % 3 === 0 ? 'tokenize 500 internal' : undefined;
      },
    };
    const failed = await warmUp(failsEveryThird, 2, 0.05, () => 'tokenize', new AbortController().signal);
    expect(calls).toBeGreaterThan(3);
    expect(failed).toBe(Math.floor(calls / 3));
  });

  it('stops and says so when the vault exits meanwhile', async () => {
    const halt = new AbortController();
    const runner: Runner = {
      run: async () => {
        await nextTick();
        return undefined;
      },
    };
    setTimeout(() => halt.abort('the vault exited'), 20);
    await expect(warmUp(runner, 2, 5, () => 'tokenize', halt.signal)).rejects.toThrow('the vault exited during the warm-up');
  });
});
