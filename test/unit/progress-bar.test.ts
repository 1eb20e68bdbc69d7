import { ProgressBar, renderProgress } from '../../src/updater/progress-bar';

function stream(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, isTTY, write: (text: string) => chunks.push(text) };
}

describe('renderProgress', () => {
  it('fills the bar in proportion and prints counts with separators', () => {
    expect(renderProgress(3000, 10_000, 10)).toBe('[###.......]  3,000/10,000  30%');
    expect(renderProgress(10_000, 10_000, 10)).toBe('[##########]  10,000/10,000  100%');
    expect(renderProgress(0, 10, 4)).toBe('[....]  0/10  0%');
  });

  it('shows an empty run as complete and never overflows', () => {
    expect(renderProgress(0, 0, 4)).toBe('[####]  0/0  100%');
    expect(renderProgress(12, 10, 4)).toBe('[####]  12/10  100%');
  });
});

describe('ProgressBar', () => {
  it('redraws one line in place on a terminal and ends it on finish', () => {
    const out = stream(true);
    const bar = new ProgressBar(out, 'run');
    bar.update(1, 4);
    bar.update(2, 4);
    bar.finish();
    expect(out.chunks).toEqual([`\rrun ${renderProgress(1, 4)}`, `\rrun ${renderProgress(2, 4)}`, '\n']);
  });

  it('writes one line per tenth when the output is not a terminal', () => {
    const out = stream(false);
    const bar = new ProgressBar(out, 'run');
    for (let done = 0; done <= 1000; done += 7) bar.update(done, 1000);
    bar.update(1000, 1000);
    expect(out.chunks).toHaveLength(11);
    expect(out.chunks.every((line) => line.endsWith('\n') && !line.includes('\r'))).toBe(true);
    expect(out.chunks[10]).toContain('100%');
  });
});
