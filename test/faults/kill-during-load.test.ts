// SIGKILL the compiled vault under a tokenize load, restart it on the same database: nothing acknowledged is lost.
import { ensureBuilt } from '../support/build';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { newPan } from '../support/pans';
import { detokenize, tokenize } from './support/client';
import { inBatches, startLoad, stopLoads, Tally } from './support/load';
import { baseEnv, devKeys, removeScratchDirs, scratchDataDir, startVault, until, type VaultProcess } from './support/vault-process';

jest.setTimeout(150_000);

const CLIENTS = 16;
/** Acknowledged tokens wanted before the kill: enough that many requests are in every stage when it lands. */
const ACKNOWLEDGED_BEFORE_KILL = 400;

let fresh: FreshDatabase;
let dataDir: string;
const vaults: VaultProcess[] = [];

beforeAll(async () => {
  await ensureBuilt();
  fresh = await freshDatabase('cardvault_fault_kill');
  dataDir = scratchDataDir('kill');
}, 180_000);
afterEach(stopLoads);
afterAll(async () => {
  for (const vault of vaults) await vault.stop();
  removeScratchDirs();
  await fresh?.drop();
});

async function vaultOnTheDatabase(): Promise<VaultProcess> {
  const vault = await startVault('kill9', { ...baseEnv(dataDir), DATABASE_URL: fresh.url, RATE_LIMITS: 'off' });
  vaults.push(vault);
  return vault;
}

it('keeps every acknowledged token after a SIGKILL mid-load, keyed or not: each detokenizes to its PAN and has its card.tokenize event', async () => {
  const first = await vaultOnTheDatabase();
  const keys = devKeys(dataDir);

  // Every other request carries an Idempotency-Key, as a retrying backend sends: those share transactions.
  let sent = 0;
  const acknowledged: Array<{ pan: string; token: string }> = [];
  const unanswered: Array<{ pan: string; idempotencyKey?: string }> = [];
  const statuses = new Tally();
  let killing = false;
  const load = startLoad(CLIENTS, async (agent) => {
    const pan = newPan();
    const idempotencyKey = (sent += 1) % 2 === 0 ? `kill9-${sent}` : undefined;
    try {
      const res = await tokenize(first.url, keys.merchant, pan, {}, agent, idempotencyKey);
      statuses.add(res.status);
      if (res.status === 201) acknowledged.push({ pan, token: res.body.token as string });
    } catch (err) {
      if (!killing) throw err;
      unanswered.push({ pan, idempotencyKey });
    }
  });
  await until('tokens acknowledged before the kill', async () => (acknowledged.length >= ACKNOWLEDGED_BEFORE_KILL || load.crashes.length > 0 ? true : undefined));
  killing = true;
  load.halt();
  await first.kill9();
  await load.stop();
  const acknowledgedAtKill = acknowledged.length;

  expect(load.crashes).toEqual([]);
  expect(first.ended()).toBe('SIGKILL');
  // Under load nothing but 201 came back: every PAN was fresh and the vault was healthy until the kill.
  expect(statuses.keys()).toEqual(['201']);
  expect(new Set(acknowledged.map((a) => a.token)).size).toBe(acknowledged.length);

  const second = await vaultOnTheDatabase();
  // Before anything is retried: the database holds exactly the acknowledged cards plus those of the unanswered
  // requests that had committed (retrying those below tells which), nothing else.
  const cardsAfterRestart = (await fresh.db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards'))[0]!.n;

  const revealed = await inBatches(acknowledged, CLIENTS, async ({ pan, token }) => {
    const res = await detokenize(second.url, keys.payments, token);
    return res.status === 200 && res.body.card.number === pan;
  });
  expect(revealed.filter((ok) => !ok)).toHaveLength(0);

  const events = await fresh.db.query<{ token: string; n: number }>(
    `SELECT event::jsonb ->> 'token' AS token, count(*)::int AS n FROM audit_events
     WHERE event::jsonb ->> 'action' = 'card.tokenize' AND event::jsonb ->> 'outcome' = 'success' GROUP BY 1`,
  );
  const audited = new Map(events.map((e) => [e.token, e.n]));
  expect(acknowledged.filter(({ token }) => audited.get(token) !== 1)).toEqual([]);

  // An unanswered request is safe to retry. Without a key: 200 with the token it had committed, or 201 if it
  // never had. With its key: 201 either way (its recorded answer, or a first one), and that token again after.
  const tokensAtRestart = new Set((await fresh.db.query<{ token: string }>('SELECT token FROM cards')).map((row) => row.token));
  let committed = 0;
  await inBatches(unanswered, CLIENTS, async ({ pan, idempotencyKey }) => {
    const res = await tokenize(second.url, keys.merchant, pan, {}, undefined, idempotencyKey);
    expect((await detokenize(second.url, keys.payments, res.body.token as string)).body.card.number).toBe(pan);
    if (tokensAtRestart.has(res.body.token as string)) committed += 1;
    if (idempotencyKey === undefined) {
      expect(res.status).toBe(tokensAtRestart.has(res.body.token as string) ? 200 : 201);
      return;
    }
    expect(res.status).toBe(201);
    const again = await tokenize(second.url, keys.merchant, pan, {}, undefined, idempotencyKey);
    expect([again.status, again.body.token]).toEqual([201, res.body.token]);
  });
  expect(cardsAfterRestart).toBe(acknowledgedAtKill + committed);
  const cardsAfterRetries = (await fresh.db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards'))[0]!.n;
  expect(cardsAfterRetries).toBe(acknowledgedAtKill + unanswered.length);

  process.stdout.write(
    `fault kill -9: ${acknowledgedAtKill} tokens acknowledged before SIGKILL, all ${acknowledgedAtKill} detokenize and are audited after the restart; ` +
      `${unanswered.length} in flight (${committed} had committed, ${unanswered.length - committed} had not; ` +
      `${unanswered.filter((u) => u.idempotencyKey).length} of them with an Idempotency-Key)\n`,
  );
});
