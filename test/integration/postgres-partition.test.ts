// A network that silently drops PostgreSQL's traffic (a failover, a partition: no RST): the server's
// statement_timeout never fires, so the pool's own deadline must, and must discard the connection it gave up on.
import { CLIENT_DEADLINE_MARGIN_MS, openPostgres, POOL_WAIT_MS, type Db } from '../../src/store/db';
import { PgCardStore } from '../../src/store/card-store';
import { TEST_DATABASE_NAME } from '../support/env';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';

jest.setTimeout(30_000);

const STATEMENT_TIMEOUT_MS = 300;
const DEADLINE_MS = STATEMENT_TIMEOUT_MS + CLIENT_DEADLINE_MARGIN_MS;

let proxy: TcpProxy;
let db: Db;

beforeEach(async () => {
  proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 });
  // One connection: a stuck client handed out again would hang the query that follows.
  db = openPostgres({
    url: `postgres://postgres@127.0.0.1:${proxy.port}/${TEST_DATABASE_NAME}`,
    poolSize: 1,
    statementTimeoutMs: STATEMENT_TIMEOUT_MS,
  });
});
afterEach(async () => {
  // Cut whatever is still stuck before ending the pool, so a failing test cannot hang the file.
  await proxy.stop();
  await db.close();
});

/** The promise's outcome, or 'no answer' once `ms` have passed: a hang fails the test instead of timing it out. */
async function outcomeWithin(promise: Promise<unknown>, ms: number): Promise<{ value?: unknown; error?: unknown } | 'no answer'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'no answer'>((resolve) => {
    timer = setTimeout(() => resolve('no answer'), ms);
  });
  try {
    return await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), late]);
  } finally {
    clearTimeout(timer);
  }
}

it('rejects a query on a black-holed connection with database_unavailable at its deadline, and reconnects after', async () => {
  await db.query('SELECT 1');
  proxy.blackHole();
  const started = Date.now();
  const stuck = await outcomeWithin(db.query('SELECT 1'), DEADLINE_MS + 1000);
  const elapsed = Date.now() - started;
  expect(stuck).toEqual({ error: expect.objectContaining({ code: 'database_unavailable', status: 503 }) });
  expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 50);

  proxy.forward();
  // The stuck client was destroyed: the pool's one slot opens a new connection rather than queueing behind it.
  await expect(outcomeWithin(db.query<{ ok: number }>('SELECT 1 AS ok'), 3000)).resolves.toEqual({ value: [{ ok: 1 }] });
});

it('rejects a transaction whose statement is black-holed with database_unavailable at its deadline, and reconnects after', async () => {
  await db.query('SELECT 1');
  proxy.blackHole();
  const atBegin = await outcomeWithin(
    db.transaction((tx) => tx.query('SELECT 1')),
    DEADLINE_MS + 1000,
  );
  expect(atBegin).toEqual({ error: expect.objectContaining({ code: 'database_unavailable', status: 503 }) });

  proxy.forward();
  let reachedCommit = false;
  const midway = await outcomeWithin(
    db.transaction(async (tx) => {
      await tx.query('SELECT 1');
      proxy.blackHole();
      await tx.query('SELECT 2');
      reachedCommit = true;
    }),
    // The stuck statement's deadline; no ROLLBACK may then wait behind it on the same connection.
    DEADLINE_MS + 1000,
  );
  expect(midway).toEqual({ error: expect.objectContaining({ code: 'database_unavailable', status: 503 }) });
  expect(reachedCommit).toBe(false);

  proxy.forward();
  await expect(outcomeWithin(db.transaction((tx) => tx.query<{ ok: number }>('SELECT 1 AS ok')), 3000)).resolves.toEqual({
    value: [{ ok: 1 }],
  });
});

it('lets a transaction without a statement limit (a migration) run past the deadline', async () => {
  const sleepSeconds = (DEADLINE_MS + 500) / 1000;
  await expect(
    db.transaction((tx) => tx.query<{ slept: boolean }>(`SELECT true AS slept FROM pg_sleep(${sleepSeconds})`), { statementTimeoutMs: 0 }),
  ).resolves.toEqual([{ slept: true }]);
});

it("gives a transaction with its own statement limit a deadline past that one, not the pool's", async () => {
  const sleepSeconds = (DEADLINE_MS + 500) / 1000;
  await expect(
    db.transaction((tx) => tx.query<{ slept: boolean }>(`SELECT true AS slept FROM pg_sleep(${sleepSeconds})`), { statementTimeoutMs: DEADLINE_MS + 2000 }),
  ).resolves.toEqual([{ slept: true }]);
  // The server applies the limit: it cancels, and that is database_unavailable as ever.
  await expect(db.transaction((tx) => tx.query('SELECT pg_sleep(1)'), { statementTimeoutMs: 100 })).rejects.toMatchObject({
    code: 'database_unavailable',
    cause: expect.objectContaining({ code: '57014' }),
  });
  // Only that transaction: the next one on the pool has the pool's limit again.
  await expect(db.transaction((tx) => tx.query<{ limit: string }>("SELECT current_setting('statement_timeout') AS limit"))).resolves.toEqual([
    { limit: `${STATEMENT_TIMEOUT_MS}ms` },
  ]);
});

it('refuses a statement limit that is not a whole number of ms', async () => {
  for (const statementTimeoutMs of [-1, 1.5, Number.NaN]) {
    await expect(db.transaction((tx) => tx.query('SELECT 1'), { statementTimeoutMs })).rejects.toBeInstanceOf(RangeError);
  }
});

it('fails card lookups queued behind black-holed batches within a bound, not one deadline per batch ahead of them', async () => {
  const pool = openPostgres({ url: `postgres://postgres@127.0.0.1:${proxy.port}/${TEST_DATABASE_NAME}`, poolSize: 4, statementTimeoutMs: STATEMENT_TIMEOUT_MS });
  try {
    const cards = new PgCardStore(pool, pool);
    await pool.query('SELECT 1');
    proxy.blackHole();
    const started = Date.now();
    // Four batches of 64 out, the rest queued. Without a queue deadline the last of 1,500 waited about six deadlines
    // (13 s); with it, a lookup waits at most the queue deadline, then one connection wait and one statement deadline.
    const lookups = Array.from({ length: 1500 }, (_, i) => cards.findCard('00000000-0000-4000-8000-000000000000', `tok_${String(i).padStart(16, 'a')}`));
    const bound = POOL_WAIT_MS + Math.max(POOL_WAIT_MS, DEADLINE_MS) + 1000;
    const outcomes = await outcomeWithin(Promise.allSettled(lookups), bound);
    expect(outcomes).not.toBe('no answer');
    const settled = (outcomes as { value: PromiseSettledResult<unknown>[] }).value;
    expect(settled.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'database_unavailable')).toBe(true);
    expect(Date.now() - started).toBeLessThan(bound);
  } finally {
    proxy.stop();
    await pool.close();
  }
});
