// Runs after the main suites: no PAN they vaulted may appear in any log line they captured or in a pg_dump.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOG_DIR, PAN_DIR, TEST_DATABASE_NAME } from '../support/env';

function readAll(dir: string): string {
  if (!fs.existsSync(dir)) return '';
  return fs
    .readdirSync(dir)
    .map((name) => fs.readFileSync(path.join(dir, name), 'utf8'))
    .join('\n');
}

const pans = [...new Set(readAll(PAN_DIR).split('\n').filter(Boolean))];
const logs = readAll(LOG_DIR);

describe('canary', () => {
  // Floors well under what the suites produce (about 90 PANs, 300 lines): a run that lost them must not pass.
  it('has material to check: the suite vaulted PANs and wrote logs', () => {
    expect(pans.length).toBeGreaterThanOrEqual(50);
    expect(logs.split('\n').length).toBeGreaterThanOrEqual(200);
  });

  it('finds no vaulted PAN in any captured log line', () => {
    const leaked = pans.filter((pan) => logs.includes(pan));
    expect(leaked).toEqual([]);
  });

  it('finds no vaulted PAN in a pg_dump of the test database (cards, audit log, all tables), as text or as hex bytes', () => {
    const dump = execFileSync('pg_dump', ['-h', '127.0.0.1', '-U', 'postgres', '--no-owner', TEST_DATABASE_NAME], {
      maxBuffer: 512 * 1024 * 1024,
      encoding: 'utf8',
    });
    expect(dump).toContain('COPY public.cards');
    expect(dump).toContain('COPY public.audit_events');
    const leaked = pans.filter((pan) => dump.includes(pan) || dump.includes(Buffer.from(pan).toString('hex')));
    expect(leaked).toEqual([]);
  });
});
