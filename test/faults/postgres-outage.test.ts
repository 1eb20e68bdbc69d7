// A private PostgreSQL cluster crashed (pg_ctl stop -m immediate) under load and started again: the vault answers
// 503 with Retry-After meanwhile, stays up, and recovers without a restart, every acknowledged card intact.
import { Client } from 'pg';
import { ensureBuilt } from '../support/build';
import { newPan } from '../support/pans';
import { call, detokenize, tokenize, type Answer } from './support/client';
import { inBatches, startLoad, stopLoads, Tally } from './support/load';
import { startPrivatePostgres, type PrivatePostgres } from './support/private-services';
import { baseEnv, devKeys, removeScratchDirs, scratchDataDir, sleep, startVault, until, watching, type VaultProcess } from './support/vault-process';

jest.setTimeout(150_000);

const CLIENTS = 8;

let pg: PrivatePostgres;
let vault: VaultProcess;
let dataDir: string;

beforeAll(async () => {
  await ensureBuilt();
  pg = await startPrivatePostgres();
  dataDir = scratchDataDir('pg');
  vault = await startVault('postgres-outage', { ...baseEnv(dataDir), DATABASE_URL: pg.url, DATABASE_POOL_SIZE: '10', RATE_LIMITS: 'off' });
}, 180_000);
afterEach(stopLoads);
afterAll(async () => {
  await vault?.stop();
  removeScratchDirs();
  pg?.destroy();
});

async function queryPrivate<R extends Record<string, unknown>>(sql: string): Promise<R[]> {
  const client = new Client({ connectionString: pg.url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** A retryable refusal as the README promises it: 503 problem+json, a stable code, Retry-After in seconds. */
function expectRetryable503(res: Answer, codes: readonly string[]): void {
  expect(res.status).toBe(503);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(codes).toContain(res.body.code);
  const retryAfter = Number(res.headers['retry-after']);
  expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 5).toBe(true);
}

it('answers 503 database_unavailable with Retry-After while PostgreSQL is down, stays up, and recovers without a restart', () =>
  watching(vault, async () => {
    const keys = devKeys(dataDir);
    const acknowledged: Array<{ pan: string; token: string }> = [];
    /** Detokenizes answered 200, by token: each was answered after its audit event's flush. */
    const revealedTimes = new Map<string, number>();
    const answers: Answer[] = [];
    const connectionErrors: unknown[] = [];
    let phase: 'up' | 'down' | 'back' = 'up';
    const byPhase = { up: new Tally(), down: new Tally(), back: new Tally() };

    // Half the clients tokenize fresh PANs, half detokenize what was acknowledged; a client backs off briefly
    // after a 503, as Retry-After asks (shortened so the outage stays short).
    const load = startLoad(CLIENTS, async (agent, client) => {
      const at = phase;
      let res: Answer;
      try {
        if (client % 2 === 0 || acknowledged.length === 0) {
          const pan = newPan();
          res = await tokenize(vault.url, keys.merchant, pan, {}, agent);
          if (res.status === 201) acknowledged.push({ pan, token: res.body.token as string });
        } else {
          const card = acknowledged[Math.floor(Math.random() * acknowledged.length)]!;
          res = await detokenize(vault.url, keys.payments, card.token, agent);
          if (res.status === 200) {
            expect(res.body.card.number).toBe(card.pan);
            revealedTimes.set(card.token, (revealedTimes.get(card.token) ?? 0) + 1);
          }
        }
      } catch (err) {
        connectionErrors.push(err);
        await sleep(50);
        return;
      }
      answers.push(res);
      byPhase[at].add(res.status === 503 ? `503/${res.body.code}` : res.status);
      if (res.status === 503) await sleep(100);
    });

    await until('load before the outage', async () => (acknowledged.length >= 200 ? true : undefined));
    // A crash lands on transactions in flight; make sure some are: hold the audit log's head row, so the vault's
    // next appends wait inside their transactions, then crash with them open.
    const blocker = new Client({ connectionString: pg.url });
    blocker.on('error', () => undefined);
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE');
    const waiting = await until('vault transactions waiting on the lock', async () => {
      const { rows } = await blocker.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'");
      return rows[0]!.n > 0 ? rows[0]!.n : undefined;
    });
    const acknowledgedBeforeCrash = acknowledged.length;
    pg.crash();
    await blocker.end().catch(() => undefined);
    phase = 'down';

    // While it is down: the probes below, and the load keeps getting refusals, never a hang or a 500.
    const refusedTokenize = await tokenize(vault.url, keys.merchant, newPan());
    expectRetryable503(refusedTokenize, ['database_unavailable']);
    const refusedDetokenize = await detokenize(vault.url, keys.payments, acknowledged[0]!.token);
    expectRetryable503(refusedDetokenize, ['database_unavailable']);
    const notReady = await call(vault.url, 'GET', '/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks.database).toBe('down');
    expect((await call(vault.url, 'GET', '/healthz')).status).toBe(200);
    await until('refusals under load', async () => (byPhase.down.get('503/database_unavailable') >= 20 ? true : undefined));
    expect(vault.alive()).toBe(true);

    pg.start();
    phase = 'back';
    await until('/readyz 200 again', async () => ((await call(vault.url, 'GET', '/readyz')).status === 200 ? true : undefined));
    await until('successes after the outage', async () => (byPhase.back.get(201) + byPhase.back.get(200) >= 100 ? true : undefined));
    await load.stop();

    expect(load.crashes).toEqual([]);
    expect(connectionErrors).toEqual([]);
    expect(vault.alive()).toBe(true);
    // Every answer was a success or a clean retryable refusal: no 500, no other status.
    for (const res of answers.filter((r) => r.status !== 200 && r.status !== 201)) expectRetryable503(res, ['database_unavailable', 'audit_unavailable']);
    expect(byPhase.back.get(201)).toBeGreaterThan(0);
    expect(byPhase.back.get(200)).toBeGreaterThan(0);

    // The crash took no audit event of an answered request, either: an immediate stop loses WAL not yet written,
    // and each answer waited for its event's flushed commit. Counted before the checks below add events of their own.
    const events = await queryPrivate<{ action: string; token: string; n: number }>(
      `SELECT event::jsonb ->> 'action' AS action, event::jsonb ->> 'token' AS token, count(*)::int AS n FROM audit_events
       WHERE event::jsonb ->> 'outcome' = 'success' AND event::jsonb ->> 'action' IN ('card.tokenize', 'card.detokenize') GROUP BY 1, 2`,
    );
    const count = (action: string, token: string) => events.find((e) => e.action === action && e.token === token)?.n ?? 0;
    expect(acknowledged.filter(({ token }) => count('card.tokenize', token) !== 1)).toEqual([]);
    expect([...revealedTimes].filter(([token, times]) => count('card.detokenize', token) < times)).toEqual([]);

    // The same process, no restart: tokenize and detokenize work, and every card acknowledged before, during or
    // after the crash survived it (fsync on; each answer followed its synchronous audit commit).
    const pan = newPan();
    const created = await tokenize(vault.url, keys.merchant, pan);
    expect(created.status).toBe(201);
    expect((await detokenize(vault.url, keys.payments, created.body.token as string)).body.card.number).toBe(pan);
    const revealed = await inBatches(acknowledged, CLIENTS, async (card) => (await detokenize(vault.url, keys.payments, card.token)).body?.card?.number === card.pan);
    expect(revealed.filter((ok) => !ok)).toHaveLength(0);

    process.stdout.write(
      `fault PostgreSQL crash: before ${byPhase.up}; down ${byPhase.down}; back ${byPhase.back}; ` +
        `${acknowledged.length} tokens acknowledged (${acknowledgedBeforeCrash} before the crash, with ${waiting} transaction(s) open in it), all detokenize after recovery, same vault process; ` +
        `every answered tokenize and detokenize (${[...revealedTimes.values()].reduce((a, b) => a + b, 0)}) has its audit event\n`,
    );
  }));
