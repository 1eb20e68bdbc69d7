import { Batcher, ItemFailure } from '../../src/domain/batcher';

/** A run() whose batches stay open until the test releases them. */
function gated<I>() {
  const batches: { items: I[]; release: () => void; fail: (err: unknown) => void }[] = [];
  const run = (items: I[]) =>
    new Promise<string[]>((resolve, reject) => {
      batches.push({ items, release: () => resolve(items.map((i) => `r:${String(i)}`)), fail: reject });
    });
  return { batches, run };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('Batcher', () => {
  it('sends a lone call at once, and answers each caller with its own result', async () => {
    const g = gated<number>();
    const batcher = new Batcher(g.run, { maxBatch: 10, maxInFlight: 1 });
    const first = batcher.submit(1);
    expect(g.batches.map((b) => b.items)).toEqual([[1]]);
    const rest = [2, 3, 4].map((i) => batcher.submit(i));
    // One batch out: the rest wait, then go together.
    expect(g.batches).toHaveLength(1);
    g.batches[0]!.release();
    expect(await first).toBe('r:1');
    await settle();
    expect(g.batches.map((b) => b.items)).toEqual([[1], [2, 3, 4]]);
    g.batches[1]!.release();
    expect(await Promise.all(rest)).toEqual(['r:2', 'r:3', 'r:4']);
  });

  it('keeps up to maxInFlight batches out and caps each at maxBatch', async () => {
    const g = gated<number>();
    const batcher = new Batcher(g.run, { maxBatch: 3, maxInFlight: 2 });
    const all = Array.from({ length: 9 }, (_, i) => batcher.submit(i));
    expect(g.batches.map((b) => b.items)).toEqual([[0], [1]]);
    g.batches[0]!.release();
    await settle();
    expect(g.batches.map((b) => b.items)).toEqual([[0], [1], [2, 3, 4]]);
    g.batches[1]!.release();
    await settle();
    expect(g.batches.map((b) => b.items)).toEqual([[0], [1], [2, 3, 4], [5, 6, 7]]);
    g.batches[2]!.release();
    g.batches[3]!.release();
    await settle();
    expect(g.batches[4]!.items).toEqual([8]);
    g.batches[4]!.release();
    expect(await Promise.all(all)).toEqual(Array.from({ length: 9 }, (_, i) => `r:${i}`));
  });

  it('never puts two items sharing a key in one batch, and keeps their order', async () => {
    const g = gated<string>();
    const batcher = new Batcher(g.run, { maxBatch: 10, maxInFlight: 1 }, (item) => item.split('/'));
    const first = batcher.submit('a/x');
    const waiting = ['b/y', 'a/z', 'c/y', 'd/w'].map((i) => batcher.submit(i));
    g.batches[0]!.release();
    await first;
    await settle();
    // a/z shares "a" only with a batch already sent; c/y shares "y" with b/y, so it waits a round.
    expect(g.batches[1]!.items).toEqual(['b/y', 'a/z', 'd/w']);
    g.batches[1]!.release();
    await settle();
    expect(g.batches[2]!.items).toEqual(['c/y']);
    g.batches[2]!.release();
    expect(await Promise.all(waiting)).toEqual(['r:b/y', 'r:a/z', 'r:c/y', 'r:d/w']);
  });

  it('holds back an item sharing a key with a batch still out, letting others pass, until that batch is answered', async () => {
    const g = gated<string>();
    const batcher = new Batcher(g.run, { maxBatch: 10, maxInFlight: 2 }, (item) => item.split('/'));
    const first = batcher.submit('a/x');
    const held = batcher.submit('a/y');
    const passes = batcher.submit('b/z');
    await settle();
    // A second batch may go out at once, but not with "a" in it: a/y would meet a/x's uncommitted rows.
    expect(g.batches.map((b) => b.items)).toEqual([['a/x'], ['b/z']]);
    g.batches[1]!.release();
    expect(await passes).toBe('r:b/z');
    await settle();
    expect(g.batches).toHaveLength(2);
    g.batches[0]!.release();
    await first;
    await settle();
    expect(g.batches[2]!.items).toEqual(['a/y']);
    g.batches[2]!.release();
    expect(await held).toBe('r:a/y');
  });

  it('fails every caller of a failed batch, and carries on with the next', async () => {
    const g = gated<number>();
    const batcher = new Batcher(g.run, { maxBatch: 10, maxInFlight: 1 });
    const first = batcher.submit(1);
    const second = [batcher.submit(2), batcher.submit(3)];
    const boom = new Error('statement failed');
    g.batches[0]!.fail(boom);
    await expect(first).rejects.toBe(boom);
    await settle();
    expect(g.batches[1]!.items).toEqual([2, 3]);
    g.batches[1]!.fail(boom);
    await expect(Promise.all(second)).rejects.toBe(boom);
    const later = batcher.submit(4);
    g.batches[2]!.release();
    expect(await later).toBe('r:4');
  });
});

describe('Batcher queue deadline', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const expired = new Error('queued too long');

  it('rejects calls that waited past the deadline behind batches with no answer, and only those', async () => {
    const g = gated<number>();
    const batcher = new Batcher(g.run, { maxBatch: 2, maxInFlight: 1, queueDeadline: { ms: 40, error: () => expired } });
    const out = batcher.submit(1);
    const early = [batcher.submit(2), batcher.submit(3)].map((p) => p.catch((err: unknown) => err));
    await sleep(25);
    const late = batcher.submit(4).catch((err: unknown) => err);
    await sleep(30);
    // The first two queued waited 55 ms: rejected, though the batch out has still not been answered.
    expect(await Promise.all(early)).toEqual([expired, expired]);
    expect(g.batches).toHaveLength(1);
    g.batches[0]!.release();
    expect(await out).toBe('r:1');
    await settle();
    // The later call, 30 ms in, still joins the next batch.
    expect(g.batches.map((b) => b.items)).toEqual([[1], [4]]);
    g.batches[1]!.release();
    expect(await late).toBe('r:4');
  });

  it('keeps waiting without a deadline', async () => {
    const g = gated<number>();
    const batcher = new Batcher(g.run, { maxBatch: 2, maxInFlight: 1 });
    void batcher.submit(1);
    let settled = false;
    const queued = batcher.submit(2).finally(() => (settled = true));
    await sleep(60);
    expect(settled).toBe(false);
    g.batches[0]!.release();
    await settle();
    g.batches[1]!.release();
    expect(await queued).toBe('r:2');
  });
});

describe('Batcher item failures', () => {
  it('rejects only the caller whose item failed', async () => {
    const batcher = new Batcher<number, number>(
      async (items) => items.map((i) => (i === 2 ? new ItemFailure(new Error(`item ${i} refused`)) : i * 10)),
      { maxBatch: 10, maxInFlight: 1 },
    );
    const settled = await Promise.allSettled([1, 2, 3].map((i) => batcher.submit(i)));
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual([10, 'item 2 refused', 30]);
  });
});
