// The CLI's progress bar for a long run: redrawn in place on a terminal, one line per tenth otherwise (logs, CI).

const WIDTH = 30;

/** `[#########.....................]  3,000/10,000  30%`; a run with nothing to do shows as complete. */
export function renderProgress(done: number, total: number, width = WIDTH): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(fraction * width);
  const count = `${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')}`;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]  ${count}  ${Math.floor(fraction * 100)}%`;
}

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export class ProgressBar {
  #lastTenth = -1;
  #drawn = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly label: string,
  ) {}

  update(done: number, total: number): void {
    const line = `${this.label} ${renderProgress(done, total)}`;
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}`);
      this.#drawn = true;
      return;
    }
    const tenth = total > 0 ? Math.floor((done / total) * 10) : 10;
    if (tenth > this.#lastTenth) {
      this.#lastTenth = tenth;
      this.stream.write(`${line}\n`);
    }
  }

  /** Ends the in-place line so what follows starts on its own. */
  finish(): void {
    if (this.#drawn) this.stream.write('\n');
    this.#drawn = false;
  }
}
