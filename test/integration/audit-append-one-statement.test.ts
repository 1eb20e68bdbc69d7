// Two ways to append one log: PostgreSQL numbering, chaining and hashing a short queue in one statement
// (migrations/0016), and the vault doing it under the head lock for a longer one. Mixed in any order, from
// several writers at once, on PostgreSQL and on PGlite, they must make one unbroken chain and one Merkle tree, and
// the same recorded_at order.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { leafHash, MerkleFrontier } from '../../src/audit/merkle';
import { PgAuditStore } from '../../src/store/audit-store';
import { ensureBuilt } from '../support/build';
import { runCompiledToExit } from '../support/compiled';
import { REPO_ROOT } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';

jest.setTimeout(90_000);

/**
 * Run by the compiled code in a process of its own (PGlite needs a real module loader): three writers, as three
 * vault processes, one always appending in one statement, one never, one choosing by its queue, send bursts of
 * 1 to 12 events each, six times over; then it prints every row and the stored head.
 */
const WRITER = `
const dist = (m) => require(require('node:path').join(process.env.DIST, m));
const { AuditLog } = dist('audit/audit-log');
const { PgAuditStore } = dist('store/audit-store');
const { openEmbedded, openPostgres } = dist('store/db');
const { migrateUp } = dist('store/migrate');
const { systemClock } = dist('domain/ports');
const { createLogger } = dist('log');
(async () => {
  const db = process.env.DATABASE_URL ? openPostgres({ url: process.env.DATABASE_URL, poolSize: 6 }) : await openEmbedded({ dataDir: process.env.DATA_DIR });
  await migrateUp(db);
  const log = createLogger({ level: 'silent' });
  const writers = [Infinity, 0, undefined].map((max) => new AuditLog(new PgAuditStore(db), systemClock, log, undefined, max));
  for (let round = 0; round < 6; round += 1) {
    await Promise.all(writers.flatMap((writer, w) => Array.from({ length: 1 + ((round * 5 + w * 3) % 12) }, (_, i) =>
      writer.record({
        tenantId: i % 3 === 0 ? null : '11111111-1111-4111-8111-111111111111',
        principal: 'writer-' + w,
        action: 'card.read',
        outcome: i % 5 === 0 ? 'failure' : 'success',
        source: '127.0.0.1',
        requestId: 'req-' + w + '-' + round + '-' + i,
        details: { i, text: 'é "quoted" \\\\ \\n', nested: { z: [1, 2.5, null], a: true } },
      }))));
  }
  await Promise.all(writers.map((w) => w.flush()));
  const store = new PgAuditStore(db);
  const rows = (await store.events(0, 10000)).map((r) => ({ seq: r.seq, event: r.event, leafHash: r.leafHash.toString('base64'), recordedAt: r.recordedAt.toISOString() }));
  const head = await store.head();
  await db.close();
  process.stdout.write(JSON.stringify({ rows, head: { size: head.size, lastLeafHash: head.lastLeafHash && head.lastLeafHash.toString('base64'), frontier: head.frontier } }));
})().catch((err) => { process.stderr.write(String(err && err.stack)); process.exit(1); });
`;

interface Written {
  rows: { seq: number; event: string; leafHash: string; recordedAt: string }[];
  head: { size: number; lastLeafHash: string | null; frontier: unknown };
}

async function writeMixed(env: Record<string, string>, cwd: string): Promise<Written> {
  const script = path.join(cwd, 'writer.js');
  fs.writeFileSync(script, WRITER);
  const run = await runCompiledToExit([path.relative(path.join(REPO_ROOT, 'dist'), script)], { DIST: path.join(REPO_ROOT, 'dist'), ...env }, cwd);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(run.stdout) as Written;
}

/** Rows, chain, leaf hashes and the stored head all agree with a tree rebuilt here from the stored texts. */
function expectOneLog({ rows, head }: Written): void {
  // 6 rounds of bursts of 1 + ((round * 5 + w * 3) % 12) events from each of 3 writers.
  const expected = [0, 1, 2, 3, 4, 5].reduce((n, round) => n + [0, 1, 2].reduce((m, w) => m + 1 + ((round * 5 + w * 3) % 12), 0), 0);
  expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: expected }, (_, i) => i));
  const frontier = new MerkleFrontier();
  let prev: string | null = null;
  let latest = 0;
  for (const row of rows) {
    const event = JSON.parse(row.event) as { seq: number; prev: string | null; time: string };
    expect(event.seq).toBe(row.seq);
    expect(event.prev).toBe(prev);
    // Either way, the row's recorded_at is the latest event time at or before it (migrations/0019).
    latest = Math.max(latest, Date.parse(event.time));
    expect(row.recordedAt).toBe(new Date(latest).toISOString());
    const hash = leafHash(Buffer.from(row.event, 'utf8'));
    expect(row.leafHash).toBe(hash.toString('base64'));
    frontier.append(hash);
    prev = row.leafHash;
  }
  expect(head.size).toBe(expected);
  expect(head.lastLeafHash).toBe(prev);
  expect(head.frontier).toEqual(frontier.toJSON());
  expect(MerkleFrontier.fromJSON(head.frontier).root().equals(frontier.root())).toBe(true);
  // Both ways were taken: writer 0 appended only in one statement, writer 1 only under the lock.
  const writers = new Set(rows.map((r) => (JSON.parse(r.event) as { principal: string }).principal));
  expect(writers).toEqual(new Set(['writer-0', 'writer-1', 'writer-2']));
}

let dir: string;
beforeAll(async () => {
  await ensureBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-audit-append-'));
}, 180_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('on PostgreSQL', () => {
  let fresh: FreshDatabase;
  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_audit_append');
  });
  afterAll(() => fresh.drop());

  it('makes one chain and one tree from both ways of appending, from several writers at once', async () => {
    expectOneLog(await writeMixed({ DATABASE_URL: fresh.url }, dir));
  });

  it('refuses pieces that do not make whole events, and appends nothing', async () => {
    const before = (await new PgAuditStore(fresh.db).head()).size;
    await expect(
      fresh.db.query('SELECT audit_append($1::text[], $2::uuid[], $3::timestamptz[])', [['{"a":', ',"b":'], [null], [new Date()]]),
    ).rejects.toThrow(/do not make whole events/);
    expect((await new PgAuditStore(fresh.db).head()).size).toBe(before);
  });
});

it('on PGlite makes the same one chain and tree', async () => {
  expectOneLog(await writeMixed({ DATA_DIR: path.join(dir, 'pgdata') }, dir));
});
