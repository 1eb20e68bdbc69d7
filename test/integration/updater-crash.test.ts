// `cardvault worker` as real processes: killed with SIGKILL at several points, and two started at once.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { vau } from '../../src/updater/formats/vau';
import { dropTransport } from '../../src/updater/network/adapter';
import { answerDrop } from '../../src/updater/network/answer-drop';
import { NetworkSimulator } from '../../src/updater/network/simulator';
import { ensureBuilt } from '../support/build';
import { LOG_DIR, REPO_ROOT } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, sharedKeyFile, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';

jest.setTimeout(120_000);

let fresh: FreshDatabase;
const workers: ChildProcess[] = [];

beforeAll(async () => {
  await ensureBuilt();
  // A database of its own: these workers serve every tenant they find, and must not find other suites' tenants.
  fresh = await freshDatabase('cardvault_updater_crash');
});
// A worker left running would schedule the next test's tenant before that test is ready for it.
afterEach(async () => {
  await Promise.all(workers.filter((w) => w.exitCode === null && w.signalCode === null).map(kill9));
});
afterAll(() => fresh.drop());

function startWorker(h: Harness, env: Record<string, string>): ChildProcess {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const log = fs.openSync(path.join(LOG_DIR, `updater-worker-${process.pid}-${workers.length}.log`), 'a');
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'cli.js'), 'worker'], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: fresh.url,
      LOCAL_KMS_KEY_FILE: sharedKeyFile,
      UPDATER_DROP_DIR: h.updaterDropDir,
      UPDATER_POLL_SECONDS: '1',
      UPDATER_LOCK_TTL_SECONDS: '5',
      UPDATER_AUDIT_SWEEP_SECONDS: '1',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', log, log],
  });
  workers.push(child);
  return child;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function stop(child: ChildProcess): Promise<void> {
  await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

async function tenantWithCards(h: Harness, count: number, runNow: boolean) {
  const { tenant, keys } = await h.tenant(['merchant']);
  const auth = bearer(keys.merchant!);
  await request(h.app).put('/v1/account-updater/settings').set(auth).send({ networks: { visa: { merchant_id: 'M-VISA-1' } } }).expect(200);
  await request(h.app).post('/v1/webhook-endpoints').set(auth).send({ url: 'http://127.0.0.1:9/hook' }).expect(201);
  for (let i = 0; i < count; i++) {
    const token = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(newPan('411111')))).body.token as string;
    await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(auth).send({ enrolled: true }).expect(200);
  }
  const runId = runNow ? ((await request(h.app).post('/v1/account-updater/runs').set(auth).send({}).expect(202)).body.id as string) : undefined;
  return { tenantId: tenant.id, runId };
}

const runOf = async (runId: string) =>
  (await fresh.db.query<{ state: string; done: number; total: number }>('SELECT state, done, total FROM updater_runs WHERE id = $1', [runId]))[0]!;

/** Every answer applied exactly once: each inquiry closed, one version per change, one outbox row per event, one audit each. */
async function expectAppliedOnce(tenantId: string, runId: string, cards: number) {
  expect(await runOf(runId)).toEqual({ state: 'completed', done: cards, total: cards });
  const open = await fresh.db.query('SELECT 1 FROM updater_inquiries WHERE tenant_id = $1 AND applied_at IS NULL', [tenantId]);
  expect(open).toEqual([]);
  const changing = await fresh.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM updater_inquiries WHERE tenant_id = $1
       AND outcome IN ('new_account', 'new_expiry', 'closed', 'contact_cardholder', 'opted_out')`,
    [tenantId],
  );
  const updates = await fresh.db.query<{ id: string; event: string }>('SELECT id, event FROM card_updates WHERE tenant_id = $1', [tenantId]);
  expect(updates.length).toBe(changing[0]!.n);
  expect(updates.length).toBeGreaterThan(0);
  const versions = await fresh.db.query<{ version: number; n: number }>(
    `SELECT c.version, (SELECT count(*)::int FROM card_updates u WHERE u.tenant_id = c.tenant_id AND u.token = c.token) AS n
     FROM cards c WHERE c.tenant_id = $1`,
    [tenantId],
  );
  for (const v of versions) expect(v.version).toBe(1 + v.n);
  const outbox = await fresh.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webhook_outbox WHERE tenant_id = $1', [tenantId]);
  expect(outbox[0]!.n).toBe(updates.filter((u) => u.event !== 'card.updater_opted_out').length);
  // The sweep audits what a killed worker committed but had not audited: every change once, none twice.
  await until('every change audited', async () => {
    const rows = await fresh.db.query<{ n: number }>('SELECT count(*)::int AS n FROM card_updates WHERE tenant_id = $1 AND audited_at IS NULL', [tenantId]);
    return rows[0]!.n === 0 ? true : undefined;
  });
  const audited = await fresh.db.query<{ update_id: string; n: number }>(
    `SELECT event::jsonb -> 'details' ->> 'update_id' AS update_id, count(*)::int AS n FROM audit_events
     WHERE event::jsonb ->> 'action' = 'updater.card_update' AND tenant_id = $1 GROUP BY 1`,
    [tenantId],
  );
  expect(audited.map((a) => a.update_id).sort()).toEqual(updates.map((u) => String(u.id)).sort());
  expect(audited.every((a) => a.n === 1)).toBe(true);
}

describe('a worker killed with SIGKILL', () => {
  it('after sending the inquiry: the restart collects the answer and applies each update once', async () => {
    const h = await buildHarness({ db: fresh.db, updater: { network: 'file-drop' } });
    try {
      const { tenantId, runId } = await tenantWithCards(h, 150, true);
      const first = startWorker(h, { UPDATER_NETWORK: 'file-drop' });
      const outbox = path.join(h.updaterDropDir, 'visa', 'to-network');
      const requestFile = await until('the inquiry file', async () =>
        fs.existsSync(outbox) ? fs.readdirSync(outbox).find((name) => name.endsWith('.req')) : undefined,
      );
      await kill9(first);
      const batchId = requestFile.replace(/\.req$/, '');
      expect(await answerDrop(dropTransport(h.updaterDropDir, 'visa'), vau, batchId, NetworkSimulator.fromFile())).toBeDefined();
      const second = startWorker(h, { UPDATER_NETWORK: 'file-drop' });
      await until('the run to complete', async () => ((await runOf(runId!)).state === 'completed' ? true : undefined));
      await expectAppliedOnce(tenantId, runId!, 150);
      await stop(second);
    } finally {
      await h.close();
    }
  });

  it('mid-apply: the restart applies the rest, and nothing twice', async () => {
    const h = await buildHarness({ db: fresh.db });
    try {
      const { tenantId, runId } = await tenantWithCards(h, 300, true);
      const first = startWorker(h, { UPDATER_NETWORK: 'simulator', UPDATER_APPLY_CHUNK: '1' });
      const doneAtKill = await until('part of the answers applied', async () => {
        const run = await runOf(runId!);
        return run.done > 10 && run.done < 200 ? run.done : undefined;
      });
      await kill9(first);
      const afterKill = await runOf(runId!);
      expect(afterKill.done).toBeGreaterThanOrEqual(doneAtKill);
      expect(afterKill.done).toBeLessThan(300);
      const second = startWorker(h, { UPDATER_NETWORK: 'simulator', UPDATER_APPLY_CHUNK: '1' });
      // The killed worker's lease must run out (5 s) before the restart may take the tenant.
      await until('the run to complete', async () => ((await runOf(runId!)).state === 'completed' ? true : undefined));
      await expectAppliedOnce(tenantId, runId!, 300);
      await stop(second);
    } finally {
      await h.close();
    }
  });

  it('while the batch is being built and sent: the restart starts from where it stopped', async () => {
    const h = await buildHarness({ db: fresh.db });
    try {
      const { tenantId, runId } = await tenantWithCards(h, 200, true);
      const first = startWorker(h, { UPDATER_NETWORK: 'simulator', UPDATER_APPLY_CHUNK: '1' });
      await until('the run to leave pending', async () => ((await runOf(runId!)).state !== 'pending' ? true : undefined));
      await kill9(first);
      const second = startWorker(h, { UPDATER_NETWORK: 'simulator' });
      await until('the run to complete', async () => ((await runOf(runId!)).state === 'completed' ? true : undefined));
      await expectAppliedOnce(tenantId, runId!, 200);
      await stop(second);
    } finally {
      await h.close();
    }
  });
});

it('two workers started at once run one run for a due tenant', async () => {
  const h = await buildHarness({ db: fresh.db });
  try {
    const { tenantId } = await tenantWithCards(h, 200, false);
    const pair = [startWorker(h, { UPDATER_NETWORK: 'simulator', UPDATER_APPLY_CHUNK: '5' }), startWorker(h, { UPDATER_NETWORK: 'simulator', UPDATER_APPLY_CHUNK: '5' })];
    const runId = await until('a scheduled run to complete', async () => {
      const rows = await fresh.db.query<{ id: string; state: string }>('SELECT id, state FROM updater_runs WHERE tenant_id = $1', [tenantId]);
      return rows.length > 0 && rows.every((r) => r.state === 'completed') ? rows : undefined;
    });
    expect(runId).toHaveLength(1);
    // Give both a few more beats: neither may start a second run for cards just inquired.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const runs = await fresh.db.query<{ trigger: string }>('SELECT trigger FROM updater_runs WHERE tenant_id = $1', [tenantId]);
    expect(runs).toEqual([{ trigger: 'schedule' }]);
    await expectAppliedOnce(tenantId, runId[0]!.id, 200);
    await Promise.all(pair.map(stop));
  } finally {
    await h.close();
  }
});
