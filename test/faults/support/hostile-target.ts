// A compiled vault to throw hostile input at, with the checks every hostile test ends on: still alive, no error
// logged (a 5xx is logged as one), no card written, the control card intact.
import { ensureBuilt } from '../../support/build';
import { freshDatabase, type FreshDatabase } from '../../support/fresh-database';
import { newPan } from '../../support/pans';
import { call, detokenize, tokenize, type Answer, type RawAnswer } from './client';
import { Tally } from './load';
import { baseEnv, devKeys, logEntries, removeScratchDirs, scratchDataDir, startVault, type VaultProcess } from './vault-process';

export interface HostileTarget {
  vault: VaultProcess;
  keys: ReturnType<typeof devKeys>;
  /** A card vaulted before any hostile request: a token that exists to aim at. */
  control: { pan: string; token: string };
  /** Every refusal by status (or `closed`), printed after the suite. */
  outcomes: Tally;
  expectUnharmed(): Promise<void>;
  /** A 4xx, optionally with the expected code, and no body echoing a secret file. */
  expectRefused(name: string, res: Answer, code?: string | RegExp): void;
  /** A 4xx or the connection closed without an answer, and no header we tried to inject. */
  expectRawRefused(name: string, res: RawAnswer): void;
  /** POST /v1/tokens with the merchant key. */
  post(body: unknown, headers?: Record<string, string>): Promise<Answer>;
}

/** A valid tokenize body on a fresh PAN (recorded for the canary). */
export const card = (extra: Record<string, unknown> = {}) => ({ card: { number: newPan(), exp_month: 12, exp_year: 2031, ...extra } });

/** Raw HTTP/1.1 text from header lines and a body. */
export const http = (lines: string[], body = '') => `${lines.join('\r\n')}\r\n\r\n${body}`;

/** Call at the top of a test file: starts the vault before its tests, prints the tally and stops it after them. */
export function hostileTarget(name: string, summary: () => string = () => ''): HostileTarget {
  let fresh: FreshDatabase;
  let baseline: { cards: number; tokenizeEvents: number };
  // Each test answers for the errors logged during it, not for an earlier test's.
  let logMark = 0;
  const target = { outcomes: new Tally() } as HostileTarget;

  const counts = async () => {
    const [cards] = await fresh.db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards');
    // Refusals that reach the vault are audited as failures; a success is a card written.
    const [events] = await fresh.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_events WHERE event::jsonb ->> 'action' = 'card.tokenize' AND event::jsonb ->> 'outcome' = 'success'",
    );
    return { cards: cards!.n, tokenizeEvents: events!.n };
  };

  beforeAll(async () => {
    await ensureBuilt();
    fresh = await freshDatabase(`cardvault_fault_${name.replace(/\W/g, '_')}`);
    const dataDir = scratchDataDir(name);
    // Rate limits on, as in production.
    target.vault = await startVault(name, { ...baseEnv(dataDir), DATABASE_URL: fresh.url, RATE_LIMITS: 'on' });
    target.keys = devKeys(dataDir);
    const pan = newPan();
    const created = await tokenize(target.vault.url, target.keys.merchant, pan);
    expect(created.status).toBe(201);
    target.control = { pan, token: created.body.token as string };
    baseline = await counts();
  }, 180_000);
  beforeEach(() => {
    logMark = target.vault ? logEntries(target.vault.logFile).length : 0;
  });
  afterAll(async () => {
    const requests = [...target.outcomes.counts.values()].reduce((a, b) => a + b, 0);
    process.stdout.write(`fault ${name}: ${requests} requests → ${target.outcomes}${summary()}\n`);
    await target.vault?.stop();
    removeScratchDirs();
    await fresh?.drop();
  });

  target.expectUnharmed = async () => {
    const { vault, keys, control } = target;
    expect(vault.alive()).toBe(true);
    expect((await call(vault.url, 'GET', '/healthz')).status).toBe(200);
    const logged = logEntries(vault.logFile).slice(logMark);
    expect(logged.filter((entry) => entry.level === 'error' || entry.level === 'fatal').map((entry) => entry.err)).toEqual([]);
    expect(await counts()).toEqual(baseline);
    expect((await detokenize(vault.url, keys.payments, control.token)).body.card.number).toBe(control.pan);
  };
  target.expectRefused = (what, res, code) => {
    target.outcomes.add(res.status);
    if (res.status < 400 || res.status >= 500) throw new Error(`${what}: expected a 4xx, got ${res.status} ${res.body?.code ?? ''}`);
    if (code) expect({ what, code: res.body?.code }).toEqual({ what, code: typeof code === 'string' ? code : expect.stringMatching(code) });
    expect(res.text).not.toMatch(/root:x:0:0|"devDependencies"|"api_keys"|BEGIN [A-Z ]*PRIVATE KEY/);
  };
  target.expectRawRefused = (what, res) => {
    target.outcomes.add(res.status ?? 'closed');
    const refused = res.status === undefined ? res.closed : res.status >= 400 && res.status < 500;
    if (!refused) throw new Error(`${what}: expected a 4xx or a closed connection, got ${res.status ?? 'no answer, connection open'}`);
    expect(res.raw.split('\r\n\r\n')[0] ?? '').not.toMatch(/injected/i);
  };
  target.post = (body, headers = {}) => call(target.vault.url, 'POST', '/v1/tokens', { key: target.keys.merchant, body, headers });
  return target;
}
