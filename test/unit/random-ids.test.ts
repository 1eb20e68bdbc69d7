import { randomHexId, randomLetterId } from '../../src/crypto/random';

describe('request and trace ids', () => {
  it('hands out each pooled byte once: 20,000 ids across several pool refills are all distinct', () => {
    // 20,000 × 8 bytes is 39 refills of the 4 KiB pool.
    const ids = Array.from({ length: 20_000 }, () => randomHexId(8));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('spells letter ids with a–p only (no digit a PAN scrubber could see), 2 letters per byte', () => {
    const ids = Array.from({ length: 5_000 }, () => randomLetterId(16));
    for (const id of ids) expect(id).toMatch(/^[a-p]{32}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('draws every nibble about equally often (chi-square over 16 letters)', () => {
    const counts = new Map<string, number>();
    const sample = Array.from({ length: 4_000 }, () => randomLetterId(16)).join('');
    for (const letter of sample) counts.set(letter, (counts.get(letter) ?? 0) + 1);
    expect(counts.size).toBe(16);
    const expected = sample.length / 16;
    const chi2 = [...counts.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    // 15 degrees of freedom: a correct generator exceeds 75 once in 1.8 billion runs (37.7, the 0.999 quantile,
    // failed one run in a thousand); a broken mapping (one letter never drawn: chi2 over 4,000) is far above.
    expect(chi2).toBeLessThan(75);
  });
});
