// A private Redis killed under load and started again: the vault degrades as documented (per-process rate limits,
// /readyz degraded, CVCs not held) without an error or a crash, and holds CVCs again once Redis is back.
import { ensureBuilt } from '../support/build';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { newPan } from '../support/pans';
import { call, detokenize, tokenize, type Answer } from './support/client';
import { startLoad, stopLoads, Tally } from './support/load';
import { startPrivateRedis, type PrivateRedis } from './support/private-services';
import { baseEnv, devKeys, removeScratchDirs, scratchDataDir, sleep, startVault, until, watching, type VaultProcess } from './support/vault-process';

jest.setTimeout(120_000);

const CLIENTS = 4;

let fresh: FreshDatabase;
let redis: PrivateRedis;
let vault: VaultProcess;
let dataDir: string;

beforeAll(async () => {
  await ensureBuilt();
  fresh = await freshDatabase('cardvault_fault_redis');
  redis = await startPrivateRedis();
  dataDir = scratchDataDir('redis');
  // Rate limits on: their fallback to process memory is part of what is under test.
  vault = await startVault('redis-outage', { ...baseEnv(dataDir), DATABASE_URL: fresh.url, REDIS_URL: redis.url, RATE_LIMITS: 'on' });
}, 180_000);
afterEach(stopLoads);
afterAll(async () => {
  await vault?.stop();
  removeScratchDirs();
  await redis?.kill();
  await fresh?.drop();
});

const readiness = async () => (await call(vault.url, 'GET', '/readyz')).body as { status: string; checks: Record<string, string> };

/** 201 with the card vaulted, the CVC held or not as stated, and the rate-limit headers of whichever store counted. */
async function tokenizeWithCvc(key: string): Promise<{ res: Answer; pan: string }> {
  const pan = newPan();
  const res = await tokenize(vault.url, key, pan, { cvc: '123' });
  expect(res.status).toBe(201);
  expect(res.headers['ratelimit']).toMatch(/^"tokenize"; r=\d+; t=\d+$/);
  return { res, pan };
}

it('stays ready and error-free with Redis down (limits per process, /readyz degraded, cvc_held false), and holds CVCs again once it is back', () =>
  watching(vault, async () => {
    const keys = devKeys(dataDir);
    expect(await readiness()).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok' } });
    const before = await tokenizeWithCvc(keys.merchant);
    expect(before.res.body.cvc_held).toBe(true);

    let phase: 'up' | 'down' | 'back' = 'up';
    const byPhase = { up: new Tally(), down: new Tally(), back: new Tally() };
    const connectionErrors: unknown[] = [];
    const load = startLoad(CLIENTS, async (agent) => {
      const at = phase;
      try {
        const res = await tokenize(vault.url, keys.merchant, newPan(), { cvc: '123' }, agent);
        byPhase[at].add(res.status === 201 ? `201/cvc_held=${res.body.cvc_held}` : `${res.status}/${res.body?.code}`);
      } catch (err) {
        connectionErrors.push(err);
        await sleep(50);
      }
    });
    await until('load before the outage', async () => (load.steps >= 50 ? true : undefined));

    await redis.kill();
    phase = 'down';
    const during = await tokenizeWithCvc(keys.merchant);
    expect(during.res.body.cvc_held).toBe(false);
    // The card itself is vaulted: it detokenizes, without a CVC.
    const revealed = await detokenize(vault.url, keys.payments, during.res.body.token as string);
    expect(revealed.status).toBe(200);
    expect(revealed.body.card.number).toBe(during.pan);
    expect(revealed.body.card.cvc).toBeUndefined();
    expect(await readiness()).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'degraded', rate_limits: 'degraded' } });
    await until('load during the outage', async () => (byPhase.down.get('201/cvc_held=false') >= 50 ? true : undefined));
    expect(vault.alive()).toBe(true);

    await redis.start();
    phase = 'back';
    await until('Redis seen again', async () => {
      const r = await readiness();
      return r.checks.redis === 'ok' && r.checks.rate_limits === undefined ? true : undefined;
    });
    // The CVC store's own connection comes back on its reconnect schedule, not at the instant /readyz does.
    const after = await until('a CVC held again', async () => {
      const attempt = await tokenizeWithCvc(keys.merchant);
      return attempt.res.body.cvc_held === true ? attempt : undefined;
    });
    const withCvc = await detokenize(vault.url, keys.payments, after.res.body.token as string);
    expect(withCvc.body.card).toMatchObject({ number: after.pan, cvc: '123' });
    // Revealed once, then gone.
    expect((await detokenize(vault.url, keys.payments, after.res.body.token as string)).body.card.cvc).toBeUndefined();
    await until('load after the outage', async () => (byPhase.back.get('201/cvc_held=true') >= 20 ? true : undefined));
    await load.stop();

    expect(load.crashes).toEqual([]);
    expect(connectionErrors).toEqual([]);
    expect(vault.alive()).toBe(true);
    // Not one request failed because of Redis, in any phase: every answer was a 201.
    for (const tally of Object.values(byPhase)) expect(tally.keys().every((k) => k.startsWith('201/'))).toBe(true);

    process.stdout.write(`fault Redis down: before ${byPhase.up}; down ${byPhase.down}; back ${byPhase.back}; no error answer, no restart\n`);
  }));
