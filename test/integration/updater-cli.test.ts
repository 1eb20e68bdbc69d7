// `cardvault updater run` and `updater status` through run(): a real run on a database of its own, with progress.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { buildHarness, sharedKeyFile, type Harness } from '../support/harness';
import { bearer, cardBody } from '../support/http';
import { newPan } from '../support/pans';
import { outcome, runCli } from '../support/cli';

jest.setTimeout(60_000);

let fresh: FreshDatabase;
let h: Harness;
let dropDir: string;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_updater_cli');
  h = await buildHarness({ db: fresh.db });
  dropDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-cli-drop-'));
});
afterAll(async () => {
  await h.close();
  await fresh.drop();
  fs.rmSync(dropDir, { recursive: true, force: true });
});

const cardvault = (...argv: string[]) =>
  runCli(argv, { DATABASE_URL: fresh.url, LOCAL_KMS_KEY_FILE: sharedKeyFile, UPDATER_DROP_DIR: dropDir, UPDATER_APPLY_CHUNK: '7' });

it('runs a tenant’s account updater with a progress bar, then reports the run by id', async () => {
  const { tenant, keys } = await h.tenant(['merchant']);
  const auth = bearer(keys.merchant!);
  await request(h.app).put('/v1/account-updater/settings').set(auth).send({ networks: { visa: { merchant_id: 'M1' }, mastercard: { merchant_id: 'M2' } } }).expect(200);
  for (let i = 0; i < 120; i++) {
    const token = (await request(h.app).post('/v1/tokens').set(auth).send(cardBody(newPan(i % 2 ? '411111' : '555555')))).body.token;
    await request(h.app).put(`/v1/tokens/${token}/account-updater`).set(auth).send({ enrolled: true }).expect(200);
  }

  const result = await cardvault('updater', 'run', '--tenant', tenant.name, '--scope', 'all');
  expect(outcome(result)).toEqual({ code: 0 });
  const printed = JSON.parse(result.out[0]!);
  expect(printed).toMatchObject({ state: 'completed', trigger: 'cli', scope: 'all', progress: { done: 120, total: 120 } });
  // Not a terminal here: one line per tenth reached, never going back, ending at 100%. How many tenths a poll
  // sees depends on the machine's speed (a fast one finishes 120 cards between two polls), so only the order
  // and the end are the CLI's to promise; the bar's one-line-per-tenth rule has its own unit test.
  const bars = result.err.split('\n').filter((line) => line.startsWith(`run ${printed.id.slice(0, 8)} [`));
  const done = bars.map((line) => Number(/\]  ([0-9]+)\/120 /.exec(line)?.[1]));
  expect(done.length).toBeGreaterThanOrEqual(1);
  expect(done.every((n, i) => Number.isInteger(n) && (i === 0 || n > done[i - 1]!))).toBe(true);
  expect(bars[bars.length - 1]).toContain('120/120  100%');

  const status = await cardvault('updater', 'status', printed.id, '--tenant', tenant.name);
  expect(outcome(status)).toEqual({ code: 0 });
  expect(JSON.parse(status.out[0]!)).toEqual(printed);
  const started = await fresh.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1 AND event::jsonb ->> 'action' = 'updater.run.start' AND event::jsonb ->> 'principal' = 'cli'",
    [tenant.id],
  );
  expect(started[0]!.n).toBe(1);
});

it('explains its usage mistakes with exit code 64', async () => {
  expect((await cardvault('updater', 'run')).code).toBe(64);
  expect((await cardvault('updater', 'run', '--tenant', 'x', '--scope', 'some')).code).toBe(64);
  expect((await cardvault('updater', 'status', '--tenant', 'x')).code).toBe(64);
  expect((await cardvault('worker', 'now')).code).toBe(64);
});
