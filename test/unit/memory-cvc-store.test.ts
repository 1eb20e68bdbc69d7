// The in-process CVC store: a sealed CVC leaves memory at its TTL, whether or not anything reads it again.
import { MemoryCvcStore } from '../../src/store/cvc-store';

const sealed = { dataKeyId: 'k', iv: Buffer.alloc(12), tag: Buffer.alloc(16), ciphertext: Buffer.from('abc') };

/** A clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('MemoryCvcStore', () => {
  afterEach(() => jest.useRealTimers());

  it('drops every expired CVC on a read of another token, not only on the next hold', async () => {
    const clock = manualClock();
    const store = new MemoryCvcStore(clock.now);
    await store.hold('t', 'a', sealed, 10);
    await store.hold('t', 'b', sealed, 10);
    clock.advance(5_000);
    await store.hold('t', 'c', sealed, 10);
    clock.advance(5_000);
    expect(await store.held('t', 'other')).toBe(false);
    expect(store.size).toBe(1);
    clock.advance(5_000);
    expect(await store.take('t', 'other')).toBeUndefined();
    expect(store.size).toBe(0);
    await store.close();
  });

  it('drops expired CVCs on its own timer on an instance that receives and reads no more', async () => {
    jest.useFakeTimers();
    const clock = manualClock();
    const store = new MemoryCvcStore(clock.now);
    await store.hold('t', 'a', sealed, 60);
    await store.hold('t', 'b', sealed, 120);
    clock.advance(60_000);
    jest.advanceTimersByTime(1_000);
    expect(store.size).toBe(1);
    clock.advance(60_000);
    jest.advanceTimersByTime(1_000);
    expect(store.size).toBe(0);
    // Nothing left to expire: the timer stops until the next hold.
    expect(jest.getTimerCount()).toBe(0);
    await store.close();
  });

  it('keeps a CVC held again for a token until its new expiry, and drops the older ones behind it', async () => {
    const clock = manualClock();
    const store = new MemoryCvcStore(clock.now);
    await store.hold('t', 'a', sealed, 10);
    clock.advance(5_000);
    await store.hold('t', 'b', sealed, 10);
    clock.advance(3_000);
    await store.hold('t', 'a', sealed, 10); // now expires at 18 s, after b
    clock.advance(8_000);
    expect(await store.held('t', 'other')).toBe(false);
    expect(store.size).toBe(1);
    expect(await store.held('t', 'a')).toBe(true);
    await store.close();
  });

  it('never answers with an expired CVC, even one a longer TTL held before it keeps in memory', async () => {
    const clock = manualClock();
    const store = new MemoryCvcStore(clock.now);
    await store.hold('t', 'long', sealed, 600);
    await store.hold('t', 'short', sealed, 1);
    clock.advance(1_000);
    expect(await store.held('t', 'short')).toBe(false);
    expect(await store.take('t', 'short')).toBeUndefined();
    expect(await store.take('t', 'long')).toEqual(sealed);
    await store.close();
  });

  it('stops its timer when closed', async () => {
    jest.useFakeTimers();
    const store = new MemoryCvcStore(manualClock().now);
    await store.hold('t', 'a', sealed, 60);
    expect(jest.getTimerCount()).toBe(1);
    await store.close();
    expect(jest.getTimerCount()).toBe(0);
    expect(store.size).toBe(0);
  });
});
