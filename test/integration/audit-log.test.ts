import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { Checkpointer } from '../../src/audit/checkpointer';
import { exportAuditLog } from '../../src/audit/export';
import { verifyExport } from '../../src/audit/verify';
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
