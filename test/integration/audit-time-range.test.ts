// An export's `from` and `to` become sequence numbers: the first event, in log order, stamped at or after each time.
// Instances stamp events when they queue them and the head lock numbers them later, so stamps arrive out of order;
// the boundary must still be exact, across both ways of appending, rows from before migration 0019 and rows a vault
// of the previous release appends during an upgrade, and found with a few primary-key reads, not a scan.
import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { Checkpointer } from '../../src/audit/checkpointer';
import { eventBytes, toAuditEvent } from '../../src/audit/event';
import { exportAuditLog } from '../../src/audit/export';
import { leafHash, MerkleFrontier } from '../../src/audit/merkle';
import { verifyExport } from '../../src/audit/verify';
import { CheckpointSigner } from '../../src/crypto/checkpoint-signer';
import { openLocalKms } from '../../src/crypto/local-kms';
import type { AuditInput, Kms } from '../../src/domain/ports';
import { createLogger } from '../../src/log';
import { PgAuditStore } from '../../src/store/audit-store';
import type { Db } from '../../src/store/db';
import { migrateDown, migrateUp } from '../../src/store/migrate';
import { PgSigningKeyStore } from '../../src/store/signing-key-store';
import { RUN_DIR } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { captureLog } from '../support/log-capture';

jest.setTimeout(60_000);

const log = createLogger({ level: 'info', destination: captureLog() });
const t0 = Date.parse('2026-11-01T09:00:00.000Z');
let kms: Kms;

beforeAll(async () => {
  kms = await openLocalKms({ keyFile: path.join(RUN_DIR, 'kms', `audit-time-range-${process.pid}.key`) });
});

const input = (writer: string, i: number): AuditInput => ({
  tenantId: null,
  principal: writer,
  action: 'card.read',
  outcome: 'success',
  source: '127.0.0.1',
  requestId: `req-${writer}-${i}`,
});

/** One vault instance: its own clock, appending under the head lock (`locked`) or in one statement. */
function writer(store: PgAuditStore, name: string, locked: boolean) {
  let now = t0;
  const audit = new AuditLog(store, { now: () => new Date(now) }, log, undefined, locked ? 0 : undefined);
  let i = 0;
  return (at: number) => {
    now = at;
    return audit.record(input(name, (i += 1)));
  };
}

/**
 * Appends as a vault before migration 0019 did, the previous release during an upgrade among them: the row keeps
 * the event's own stamp, and the head's time columns (unknown to it) are left as they were.
 */
async function appendAsBefore0019(db: Db, stamps: number[]): Promise<void> {
  await db.transaction(async (tx, opened) => {
    const head = opened[0] as unknown as { size: string; last_leaf_hash: Buffer | null; frontier: unknown };
    const frontier = MerkleFrontier.fromJSON(head.frontier);
    let seq = Number(head.size);
    let prev = head.last_leaf_hash;
    for (const stamp of stamps) {
      const bytes = eventBytes(toAuditEvent(input('previous-release', seq), new Date(stamp), seq, prev));
      const hash = leafHash(bytes);
      await tx.query('INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash) VALUES ($1, NULL, $2, $3, $4)', [
        seq, new Date(stamp), bytes.toString('utf8'), hash,
      ]);
      frontier.append(hash);
      prev = hash;
      seq += 1;
    }
    await tx.query('UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1', [seq, prev, JSON.stringify(frontier.toJSON())]);
  }, { opening: 'SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE' });
}

/** Each event's own time, from its JSON, by sequence number. */
async function stampsOf(store: PgAuditStore): Promise<number[]> {
  const rows = await store.events(0, (await store.head()).size);
  return rows.map((row) => Date.parse((JSON.parse(row.event) as { time: string }).time));
}

/** Every time worth asking about: each stamp, a millisecond either side, and before and after them all. */
const boundaries = (stamps: number[]) => [...new Set(stamps.flatMap((s) => [s - 1, s, s + 1]))].sort((a, b) => a - b);

/** What seqAtTime must answer, by definition: the first event whose own time is at or after `time`. */
const firstAtOrAfter = (stamps: number[], time: number) => {
  const seq = stamps.findIndex((stamp) => stamp >= time);
  return seq < 0 ? stamps.length : seq;
};

async function expectExactBoundaries(store: PgAuditStore): Promise<void> {
  const stamps = await stampsOf(store);
  const wrong: string[] = [];
  for (const time of boundaries(stamps)) {
    const found = await store.seqAtTime(new Date(time));
    if (found !== firstAtOrAfter(stamps, time)) wrong.push(`${new Date(time).toISOString()}: ${found}, not ${firstAtOrAfter(stamps, time)}`);
  }
  expect(wrong).toEqual([]);
}

/** recorded_at of each row appended with the time order kept: the latest stamp at or before it in the log. */
async function expectRecordedInOrder(fresh: FreshDatabase, stamps: number[], fromSeq: number, toSeq: number): Promise<void> {
  const rows = await fresh.db.query<{ seq: string; recorded_at: Date }>('SELECT seq, recorded_at FROM audit_events WHERE seq >= $1 AND seq < $2 ORDER BY seq', [fromSeq, toSeq]);
  expect(rows.map((r) => r.recorded_at.getTime())).toEqual(rows.map((r) => Math.max(...stamps.slice(0, Number(r.seq) + 1))));
}

async function checkpointerFor(fresh: FreshDatabase, store: PgAuditStore) {
  const clock = { now: () => new Date(t0 + 3_600_000) };
  const signer = new CheckpointSigner(kms, new PgSigningKeyStore(fresh.db), clock);
  await signer.ensureKey();
  const checkpointer = new Checkpointer(store, signer, clock, { origin: 'cardvault-test', maxEvents: 10_000, maxAgeMs: 60_000, pollMs: 1000 }, log);
  return { checkpointer, jwks: () => signer.jwks() };
}

async function exported(store: PgAuditStore, checkpointer: Checkpointer, from: number, to: number): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of exportAuditLog(store, checkpointer, 'cardvault-test', { tenantId: null, from: new Date(from), to: new Date(to) })) lines.push(line);
  return lines;
}

describe('two writers whose events arrive out of time order', () => {
  let fresh: FreshDatabase;
  let store: PgAuditStore;

  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_audit_time');
    store = new PgAuditStore(fresh.db);
    // A appends under the lock, B in one statement. For 20 rounds B's clock is 25 ms behind A's, so each of B's events
    // is numbered after one of A's stamped later; for 20 more A's is behind B's. Then A's clock jumps 10 s ahead
    // once, and B's next events all follow that one.
    const a = writer(store, 'a', true);
    const b = writer(store, 'b', false);
    for (let i = 0; i < 20; i += 1) {
      await a(t0 + 10 * i);
      await b(t0 + 10 * i - 25);
    }
    for (let i = 20; i < 40; i += 1) {
      await b(t0 + 10 * i);
      await a(t0 + 10 * i - 25);
    }
    await a(t0 + 10_000);
    for (let i = 0; i < 10; i += 1) await b(t0 + 400 + 10 * i);
    await a(t0 + 10_005);
  });
  afterAll(() => fresh.drop());

  it('finds the first event stamped at or after each time, whichever writer stamped it', async () => {
    await expectExactBoundaries(store);
  });

  it("stores each row's recorded_at as the latest stamp at or before it, both ways of appending, and keeps the event's own time", async () => {
    const stamps = await stampsOf(store);
    // The events say when each writer stamped them, earlier than the event numbered before them.
    expect(stamps.slice(0, 4)).toEqual([t0, t0 - 25, t0 + 10, t0 - 15]);
    expect(stamps.slice(40, 44)).toEqual([t0 + 200, t0 + 175, t0 + 210, t0 + 185]);
    await expectRecordedInOrder(fresh, stamps, 0, stamps.length);
  });

  it('exports exactly the events from the first stamped at or after `from` up to the first at or after `to`, and the export verifies', async () => {
    const { checkpointer, jwks } = await checkpointerFor(fresh, store);
    const stamps = await stampsOf(store);
    for (const [from, to] of [[t0 - 20, t0 + 100], [t0 + 395, t0 + 450], [t0 + 10_001, t0 + 20_000]] as const) {
      const lines = await exported(store, checkpointer, from, to);
      const header = JSON.parse(lines[0]!) as { first_seq: number; end_seq: number };
      expect(header).toMatchObject({ first_seq: firstAtOrAfter(stamps, from), end_seq: firstAtOrAfter(stamps, to) });
      const shown = lines.map((l) => JSON.parse(l) as { type: string; seq: number }).filter((l) => l.type === 'event').map((l) => l.seq);
      expect(shown).toEqual(Array.from({ length: header.end_seq - header.first_seq }, (_, i) => header.first_seq + i));
      expect(await verifyExport(lines, await jwks())).toMatchObject({ ok: true });
    }
  });
});

describe('finding a boundary', () => {
  let fresh: FreshDatabase;
  let store: PgAuditStore;
  const EVENTS = 4000;

  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_audit_time_plan');
    store = new PgAuditStore(fresh.db);
    const a = writer(store, 'a', true);
    const b = writer(store, 'b', true);
    // Bursts from both at once, B's stamps 3 ms behind A's, batched under the lock.
    for (let i = 0; i < EVENTS; i += 400) {
      await Promise.all(Array.from({ length: 200 }, (_, k) => [a(t0 + i + 2 * k), b(t0 + i + 2 * k - 3)]).flat());
    }
    await fresh.db.query('ANALYZE audit_events');
  });
  afterAll(() => fresh.drop());

  /** The statements seqAtTime sends, run again under EXPLAIN ANALYZE: rows of audit_events each one reads. */
  async function rowsRead(time: Date): Promise<{ rows: number; nodes: string[] }> {
    const sent: Array<{ sql: string; params?: readonly unknown[] }> = [];
    const recording = Object.assign(Object.create(fresh.db) as Db, {
      query: (sql: string, params?: readonly unknown[]) => {
        sent.push({ sql, params });
        return fresh.db.query(sql, params);
      },
    });
    await new PgAuditStore(recording).seqAtTime(time);
    let rows = 0;
    const nodes: string[] = [];
    const visit = (node: Record<string, unknown>) => {
      if (node['Relation Name'] === 'audit_events') {
        nodes.push(`${String(node['Node Type'])} ${String(node['Index Name'] ?? '')}`.trim());
        rows += (Number(node['Actual Rows']) + Number(node['Rows Removed by Filter'] ?? 0) + Number(node['Rows Removed by Index Recheck'] ?? 0)) * Number(node['Actual Loops']);
      }
      if (node['Node Type'] === 'Aggregate') nodes.push('Aggregate');
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) visit(child);
    };
    for (const { sql, params } of sent.filter((s) => s.sql.includes('audit_events'))) {
      const [explained] = await fresh.db.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, unknown> }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
      visit(explained!['QUERY PLAN'][0]!.Plan);
    }
    return { rows, nodes };
  }

  it('reads a few rows by primary key wherever the time falls, not every event before or after it', async () => {
    // A binary search of 4,000 rows reads at most 12; the scan it replaced read from 1 to 4,000 by where the time fell.
    for (const time of [t0 + 1, t0 + EVENTS / 2, t0 + EVENTS - 10, t0 + EVENTS + 1000]) {
      const { rows, nodes } = await rowsRead(new Date(time));
      expect(rows).toBeLessThanOrEqual(Math.ceil(Math.log2(EVENTS)));
      expect(new Set(nodes)).toEqual(new Set(['Index Scan audit_events_pkey']));
    }
  });
});

describe('rows from before migration 0019, and from the previous release during an upgrade', () => {
  let fresh: FreshDatabase;
  let store: PgAuditStore;

  beforeAll(async () => {
    fresh = await freshDatabase('cardvault_audit_time_upgrade');
    await migrateDown(fresh.db, { to: '0018_data_keys_generated_under' });
  });
  afterAll(() => fresh.drop());

  it('keeps every boundary exact before the ordered rows, among them, and after rows the previous release appended', async () => {
    // Before 0019: stamps out of order, the latest (t0 + 90) early on.
    await appendAsBefore0019(fresh.db, [t0, t0 + 90, t0 + 10, t0 + 5, t0 + 30, t0 + 20, t0 + 60, t0 + 40]);
    await migrateUp(fresh.db);
    store = new PgAuditStore(fresh.db);
    const a = writer(store, 'a', true);
    const b = writer(store, 'b', false);
    await b(t0 + 50);
    await a(t0 + 100);
    await b(t0 + 95);
    await expectExactBoundaries(store);

    // The previous release, still running during the upgrade, appends under the lock: its rows keep their stamps...
    await appendAsBefore0019(fresh.db, [t0 + 120, t0 + 98, t0 + 130]);
    await expectExactBoundaries(store);
    // ...and the next append here, either way, starts the ordered rows again after them.
    await a(t0 + 125);
    await b(t0 + 140);
    await appendAsBefore0019(fresh.db, [t0 + 200, t0 + 150]);
    await b(t0 + 160);
    await a(t0 + 210);
    await expectExactBoundaries(store);

    const stamps = await stampsOf(store);
    expect(stamps.length).toBe(20);
    await expectRecordedInOrder(fresh, stamps, 8, 11);
    await expectRecordedInOrder(fresh, stamps, 14, 16);
    await expectRecordedInOrder(fresh, stamps, 18, 20);
    const [head] = await fresh.db.query('SELECT time_ordered_from, time_ordered_to, time_before_ordered FROM audit_head');
    expect(head).toEqual({ time_ordered_from: '18', time_ordered_to: '20', time_before_ordered: new Date(t0 + 200) });

    const { checkpointer, jwks } = await checkpointerFor(fresh, store);
    expect(await verifyExport(await exported(store, checkpointer, t0 + 20, t0 + 130), await jwks())).toMatchObject({ ok: true });
  });
});
