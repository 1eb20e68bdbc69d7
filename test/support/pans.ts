// Every PAN a test vaults goes through here, so the canary can search logs and a pg_dump for each of them.
import fs from 'node:fs';
import path from 'node:path';
import { generateTestPan } from './test-cards';
import { PAN_DIR } from './env';

const file = path.join(PAN_DIR, `${process.pid}.txt`);

export function recordPan(pan: string): string {
  fs.mkdirSync(PAN_DIR, { recursive: true });
  fs.appendFileSync(file, `${pan}\n`);
  return pan;
}

/** A fresh PAN on a test BIN with a valid check digit, recorded for the canary. */
export function newPan(prefix = '411111', length = 16): string {
  return recordPan(generateTestPan(prefix, length));
}
