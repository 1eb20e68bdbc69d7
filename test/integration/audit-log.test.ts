import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { canonicalJson } from '../../src/audit/canonical-json';
import { Checkpointer } from '../../src/audit/checkpointer';
import { exportAuditLog } from '../../src/audit/export';
import { leafHash } from '../../src/audit/merkle';
import { verifyExport } from '../../src/audit/verify';
import { verifyCommand } from '../../src/audit/verify-command';
import { CheckpointSigner, type StoredSigningKey } from '../../src/crypto/checkpoint-signer';
import { openLocalKms } from '../../src/crypto/local-kms';
import { systemClock, type AuditInput, type Kms } from '../../src/domain/ports';
import { createLogger } from '../../src/log';
import { PgAuditStore } from '../../src/store/audit-store';
import { PgSigningKeyStore } from '../../src/store/signing-key-store';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { captureLog } from '../support/log-capture';
import { RUN_DIR } from '../support/env';

let fresh: FreshDatabase;
let store: PgAuditStore;
let audit: AuditLog;
let signer: CheckpointSigner;
let checkpointer: Checkpointer;
let kms: Kms;
const tenantA = '11111111-1111-4111-8111-111111111111';
const tenantB = '22222222-2222-4222-8222-222222222222';

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_audit');
  const log = createLogger({ level: 'info', destination: captureLog() });
  kms = await openLocalKms({ keyFile: path.join(RUN_DIR, 'kms', `audit-log-${process.pid}.key`) });
  store = new PgAuditStore(fresh.db);
  audit = new AuditLog(store, systemClock, log);
  signer = new CheckpointSigner(kms, new PgSigningKeyStore(fresh.db), systemClock);
  await signer.ensureKey();
  checkpointer = new Checkpointer(store, signer, systemClock, { origin: 'cardvault-test', maxEvents: 10_000, maxAgeMs: 60_000, pollMs: 1000 }, log);
});
afterAll(() => fresh.drop());

const event = (i: number, tenantId = i % 2 ? tenantA : tenantB): AuditInput => ({
  tenantId,
  principal: 'key-1',
  action: 'card.read',
  outcome: 'success',
  source: '127.0.0.1',
  requestId: `req${i}`,
  token: `41111100000${String(i).padStart(5, '0')}`,
});

async function exported(tenantId: string | null = null): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of exportAuditLog(store, checkpointer, 'cardvault-test', { tenantId, from: null, to: null })) lines.push(line);
  return lines;
}

it('commits concurrent events in batches with gap-free sequence numbers and an unbroken chain', async () => {
  await Promise.all(Array.from({ length: 300 }, (_, i) => audit.record(event(i))));
  const rows = await store.events(0, 1000);
  expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  const batches = await fresh.db.query<{ n: number }>('SELECT count(DISTINCT xmin::text)::int AS n FROM audit_events');
  expect(batches[0]!.n).toBeLessThan(300);
  expect((await store.head()).size).toBe(300);
});

it('exports a log that verifies, for every tenant and for one', async () => {
  await checkpointer.checkpointNow();
  await Promise.all(Array.from({ length: 40 }, (_, i) => audit.record(event(300 + i))));
  const jwks = await signer.jwks();
  const all = await verifyExport(await exported(), jwks);
  expect(all).toMatchObject({ ok: true, events: 340, leaves: 0, treeSize: 340 });
  const one = await verifyExport(await exported(tenantA), jwks);
  expect(one).toMatchObject({ ok: true, events: 170, leaves: 170, treeSize: 340 });
});

it('rejects a truncated export and a forged checkpoint', async () => {
  const lines = await exported();
  const jwks = await signer.jwks();
  const truncated = await verifyExport(lines.slice(0, -5), jwks);
  expect(truncated.ok).toBe(false);
  expect(truncated.problems[0]).toMatch(/truncated/);

  // A genuine-looking checkpoint (right origin, size and root) signed by a key the vault never published.
  const keys: StoredSigningKey[] = [];
  const forger = new CheckpointSigner(
    await openLocalKms({ keyFile: path.join(RUN_DIR, 'kms', `forger-${process.pid}.key`) }),
    { insertSigningKey: async (k) => void keys.push({ ...k, createdAt: new Date() }), listSigningKeys: async () => keys },
    systemClock,
  );
  await forger.createKey();
  const genuine = JSON.parse(lines.find((l) => l.includes('"type":"checkpoint"'))!) as { jws: string };
  const payload = Buffer.from(genuine.jws.split('.')[1]!, 'base64url');
  const forgedJws = await forger.sign(payload);
  const forged = lines.map((l) => (l.includes(genuine.jws) ? `${JSON.stringify({ type: 'checkpoint', jws: forgedJws })}\n` : l));
  const report = await verifyExport(forged, jwks);
  expect(report.ok).toBe(false);
  expect(report.problems[0]).toMatch(/signature/);
});

it('rotates the signing key with overlap: published first, signing later, old checkpoints still verify', async () => {
  let now = Date.now();
  const clock = { now: () => new Date(now) };
  const rotating = new CheckpointSigner(kms, new PgSigningKeyStore(fresh.db), clock);
  const before = await signer.jwks();
  const kid = await rotating.createKey(60 * 60 * 1000);
  const during = await rotating.jwks();
  expect(during.keys.map((k) => k.kid)).toEqual([...before.keys.map((k) => k.kid), kid]);
  const header = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string };
  expect(header(await rotating.sign(Buffer.from('{}'))).kid).not.toBe(kid);
  now += 61 * 60 * 1000;
  expect(header(await rotating.sign(Buffer.from('{}'))).kid).toBe(kid);
  // Everything signed before the rotation still verifies against the published set.
  expect((await verifyExport(await exported(), await rotating.jwks())).ok).toBe(true);
});

describe('an export altered after it left the vault', () => {
  // A log of its own: 14 events one second apart (every third a detokenize, tenants alternating), checkpoints
  // at 4, 8 and 12; each export adds the covering one at 14.
  type Line = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const t0 = Date.parse('2026-11-01T00:00:00.000Z');
  const at = (i: number) => new Date(t0 + i * 1000);
  let now = t0;
  const clock = { now: () => new Date(now) };
  let own: FreshDatabase;
  let ownStore: PgAuditStore;
  let ownCheckpointer: Checkpointer;
  let jwks: { keys: unknown[] };

  beforeAll(async () => {
    own = await freshDatabase('cardvault_audit_altered');
    const log = createLogger({ level: 'info', destination: captureLog() });
    ownStore = new PgAuditStore(own.db);
    const ownLog = new AuditLog(ownStore, clock, log);
    const ownSigner = new CheckpointSigner(kms, new PgSigningKeyStore(own.db), clock);
    await ownSigner.ensureKey();
    ownCheckpointer = new Checkpointer(ownStore, ownSigner, clock, { origin: 'cardvault-test', maxEvents: 10_000, maxAgeMs: 60_000, pollMs: 1000 }, log);
    for (let i = 0; i < 14; i += 1) {
      now = at(i).getTime();
      await ownLog.record({ ...event(i), action: i % 3 === 0 ? 'card.detokenize' : 'card.read' });
      if ((i + 1) % 4 === 0) await ownCheckpointer.checkpointNow();
    }
    now = at(20).getTime();
    jwks = await ownSigner.jwks();
  });
  afterAll(() => own.drop());

  async function exportOf(tenantId: string | null, from: Date | null = null, to: Date | null = null): Promise<Line[]> {
    const lines: Line[] = [];
    for await (const line of exportAuditLog(ownStore, ownCheckpointer, 'cardvault-test', { tenantId, from, to })) lines.push(JSON.parse(line) as Line);
    return lines;
  }
  const verify = (lines: Line[]) => verifyExport(lines.map((l) => `${JSON.stringify(l)}\n`), jwks);
  const leafLine = (l: Line): Line => ({ type: 'leaf', seq: l.seq, leaf_hash: leafHash(Buffer.from(canonicalJson(l.event), 'utf8')).toString('base64') });
  /** What a forger does after editing an event: every later event's `prev` recomputed from the lines before it. */
  function rechain(lines: Line[]): Line[] {
    let prev: Buffer | undefined;
    return lines.map((l) => {
      if (l.type === 'leaf') prev = Buffer.from(l.leaf_hash as string, 'base64');
      if (l.type !== 'event') return l;
      const e = { ...l.event, prev: prev ? prev.toString('base64') : l.event.prev };
      prev = leafHash(Buffer.from(canonicalJson(e), 'utf8'));
      return { ...l, event: e };
    });
  }

  it('verifies honest exports: every tenant, one tenant, and time ranges, one starting from a checkpoint', async () => {
    expect(await verify(await exportOf(null))).toMatchObject({ ok: true, events: 14, leaves: 0, checkpoints: 4, treeSize: 14 });
    expect(await verify(await exportOf(tenantA))).toMatchObject({ ok: true, events: 7, leaves: 7, treeSize: 14 });
    expect(await verify(await exportOf(null, at(5), at(10)))).toMatchObject({ ok: true, events: 5, leaves: 5, checkpoints: 4, treeSize: 14 });
    const late = await exportOf(tenantA, at(9), at(12));
    expect(late.find((l) => l.type === 'start')).toMatchObject({ tree_size: 8 });
    expect(await verify(late)).toMatchObject({ ok: true, events: 2, leaves: 4, checkpoints: 3, treeSize: 14 });
    expect(await verify(await exportOf(null, at(30)))).toMatchObject({ ok: true, events: 0, treeSize: 14 });
  });

  it('rejects an altered event whose chain was recomputed and whose checkpoints were moved after the leaves', async () => {
    const lines = await exportOf(null);
    expect((await verify(lines)).ok).toBe(true);
    const altered = rechain(lines.map((l) => (l.type === 'event' && l.seq === 6 ? { ...l, event: { ...l.event, action: 'card.read' } } : l)));
    expect(lines[lines.findIndex((l) => l.seq === 6)]!.event.action).toBe('card.detokenize');
    const checkpoints = altered.filter((l) => l.type === 'checkpoint');
    const moved = [...altered.filter((l) => l.type !== 'checkpoint' && l.type !== 'end'), ...checkpoints, altered[altered.length - 1]!];
    const report = await verify(moved);
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatch(/checkpoints listed before the start line .* they were moved/);
    // Only the covering checkpoint left in place: the others, now after the leaves, are refused where they stand.
    const last = checkpoints[checkpoints.length - 1]!;
    const kept = altered.filter((l) => l.type !== 'end' && (l.type !== 'checkpoint' || l === last));
    const mostly = [...kept, ...checkpoints.slice(0, -1), altered[altered.length - 1]!];
    expect((await verify(mostly)).problems[0]).toMatch(/root at tree size 14 does not match/);
  });

  it('rejects an export cut short at an earlier checkpoint, with or without its header rewritten to match', async () => {
    const lines = await exportOf(null);
    expect((await verify(lines)).ok).toBe(true);
    const cut = [...lines.filter((l) => !(l.type === 'event' && l.seq >= 4) && l.type !== 'end'), { type: 'end', tree_size: 4 }];
    for (const attempt of [cut, cut.map((l) => (l.type === 'header' ? { ...l, end_seq: 4 } : l))]) {
      const report = await verify(attempt);
      expect(report).toMatchObject({ ok: false, firstBadSeq: 4 });
      expect(report.problems[0]).toMatch(/truncated/);
    }
  });

  it('rejects an all-tenant export that gives an event in its range only as a leaf hash', async () => {
    for (const lines of [await exportOf(null), await exportOf(null, at(5), at(10))]) {
      expect((await verify(lines)).ok).toBe(true);
      const report = await verify(lines.map((l) => (l.type === 'event' && l.seq === 6 ? leafLine(l) : l)));
      expect(report).toMatchObject({ ok: false, firstBadSeq: 6 });
      expect(report.problems[0]).toMatch(/hidden/);
    }
  });

  it('rejects a header whose range disagrees with the lines', async () => {
    const all = await exportOf(null);
    const ranged = await exportOf(null, at(5), at(10));
    expect((await verify(ranged)).ok).toBe(true);
    const header = (lines: Line[], fields: Line) => lines.map((l) => (l.type === 'header' ? { ...l, ...fields } : l));
    // No start time, yet events 0–2 declared out of range and given as bare hashes.
    const hiddenStart = header(all, { first_seq: 3 }).map((l) => (l.type === 'event' && l.seq < 3 ? leafLine(l) : l));
    expect(await verify(hiddenStart)).toMatchObject({ ok: false });
    // An event the header places outside the range.
    expect(await verify(header(ranged, { end_seq: 9 }))).toMatchObject({ ok: false, firstBadSeq: 9 });
    expect(await verify(header(ranged, { first_seq: 6 }))).toMatchObject({ ok: false, firstBadSeq: 5 });
    // A range past the end, and an end_seq short of the end with no end time.
    expect(await verify(header(ranged, { end_seq: 15 }))).toMatchObject({ ok: false });
    expect(await verify(header(all, { end_seq: 13 }).map((l) => (l.type === 'event' && l.seq === 13 ? leafLine(l) : l)))).toMatchObject({ ok: false });
  });

  it('reports a malformed leaf hash or starting range as a failure at its sequence number, not an exception', async () => {
    const scoped = await exportOf(tenantA);
    const short = scoped.map((l) => (l.type === 'leaf' && l.seq === 2 ? { ...l, leaf_hash: Buffer.alloc(31).toString('base64') } : l));
    await expect(verify(short)).resolves.toMatchObject({ ok: false, firstBadSeq: 2 });
    const late = await exportOf(null, at(9));
    for (const frontier of [null, { size: 8, hashes: ['AAAA'] }, { size: 8, hashes: [] }]) {
      await expect(verify(late.map((l) => (l.type === 'start' ? { ...l, frontier } : l)))).resolves.toMatchObject({ ok: false, firstBadSeq: 8 });
    }

    // The command still prints its JSON report, naming the sequence number.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-verify-'));
    try {
      fs.writeFileSync(path.join(dir, 'export.ndjson'), short.map((l) => `${JSON.stringify(l)}\n`).join(''));
      fs.writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify(jwks));
      const out: string[] = [];
      expect(await verifyCommand(path.join(dir, 'export.ndjson'), path.join(dir, 'jwks.json'), (l) => out.push(l))).toBe(1);
      expect(JSON.parse(out[0]!)).toMatchObject({ ok: false, first_bad_seq: 2 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tampering directly in PostgreSQL as superuser, trigger disabled', () => {
  const tamper = async (sql: string) => {
    await fresh.db.transaction(async (tx) => {
      await tx.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
      await tx.query(sql);
      await tx.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    });
  };

  it('refuses UPDATE, DELETE and TRUNCATE while the trigger is on, even for a superuser', async () => {
    await expect(fresh.db.query("UPDATE audit_events SET event = '{}' WHERE seq = 1")).rejects.toThrow(/append-only/);
    await expect(fresh.db.query('DELETE FROM audit_events WHERE seq = 1')).rejects.toThrow(/append-only/);
    await expect(fresh.db.query('TRUNCATE audit_events')).rejects.toThrow(/append-only/);
  });

  it('names the sequence number of a reordered row', async () => {
    // Swap the contents of rows 30 and 31 (their leaf hashes travel with them).
    await tamper(`UPDATE audit_events a SET event = b.event, leaf_hash = b.leaf_hash
                  FROM audit_events b WHERE (a.seq, b.seq) IN ((30, 31), (31, 30))`);
    const report = await verifyExport(await exported(), await signer.jwks());
    expect(report).toMatchObject({ ok: false, firstBadSeq: 30 });
    await tamper(`UPDATE audit_events a SET event = b.event, leaf_hash = b.leaf_hash
                  FROM audit_events b WHERE (a.seq, b.seq) IN ((30, 31), (31, 30))`);
    expect((await verifyExport(await exported(), await signer.jwks())).ok).toBe(true);
  });

  it('names the sequence number of a deleted row', async () => {
    const [row] = await fresh.db.query<{ event: string; leaf_hash: Buffer; recorded_at: Date; tenant_id: string }>(
      'SELECT event, leaf_hash, recorded_at, tenant_id FROM audit_events WHERE seq = 55',
    );
    await tamper('DELETE FROM audit_events WHERE seq = 55');
    const report = await verifyExport(await exported(), await signer.jwks());
    expect(report).toMatchObject({ ok: false, firstBadSeq: 55 });
    await tamper(`INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash) VALUES (55, '${row!.tenant_id}', '${row!.recorded_at.toISOString()}', '${row!.event.replace(/'/g, "''")}', '\\x${row!.leaf_hash.toString('hex')}')`);
    expect((await verifyExport(await exported(), await signer.jwks())).ok).toBe(true);
  });

  it('names the sequence number of a changed row', async () => {
    await tamper(`UPDATE audit_events SET event = replace(event, '"outcome":"success"', '"outcome":"failure"') WHERE seq = 17`);
    const report = await verifyExport(await exported(), await signer.jwks());
    expect(report).toMatchObject({ ok: false, firstBadSeq: 17 });
  });
});
