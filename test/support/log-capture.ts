// A log destination for tests: keeps lines in memory for assertions and appends them to the run folder for the canary.
import fs from 'node:fs';
import path from 'node:path';
import type { DestinationStream } from 'pino';
import { LOG_DIR } from './env';

export interface CapturedLog extends DestinationStream {
  lines: string[];
  entries(): Array<Record<string, unknown>>;
}

export function captureLog(): CapturedLog {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const file = path.join(LOG_DIR, `${process.pid}.ndjson`);
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
      fs.appendFileSync(file, line);
    },
    entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
