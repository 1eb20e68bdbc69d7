// The one SQL helper: a small interface over node-postgres and PGlite, translating driver errors once.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Client, Pool, type PoolConfig, type QueryConfig, type QueryResult } from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import { VaultError } from '../errors';
import { lockDataDir } from './embedded-lock';

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface TransactionOptions {
  /** A statement without parameters (typically a row lock), sent with BEGIN in one round trip; its rows go to `fn`. */
  opening?: string;
  /**
   * This transaction's statement limit in ms instead of the pool's, 0 for none (a migration); the client's own
   * deadline follows it. PostgreSQL only: the embedded database has no limit.
   */
  statementTimeoutMs?: number;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'embedded';
  /** Runs `fn` in a transaction. */
  transaction<T>(fn: (tx: Queryable, opened: Record<string, unknown>[]) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Runs `fn` while holding the named lock against every process on this database (PostgreSQL: a session advisory
   * lock on a connection of its own, so `fn` may use the pool; embedded: the data directory has one process).
   */
  exclusively<T>(lockId: number, fn: () => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * SQLSTATE classes and socket errors that mean "the database is not there right now", or not for this request in
 * time: 57014 is a statement cancelled by statement_timeout (a lock held too long, an overloaded server).
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0|57P03|57014|40001|40P01)/;
const UNAVAILABLE_NODE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

export function translateDbError(err: unknown): unknown {
  if (err instanceof VaultError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : '';
  if (
    (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_NODE.has(code))) ||
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(message)
  ) {
    return new VaultError('database_unavailable', undefined, { cause: err });
  }
  return err;
}

/** PostgreSQL ended this transaction to break a deadlock (or a serialization conflict): it may simply run again. */
export function isDeadlockVictim(err: unknown): boolean {
  const cause = err instanceof VaultError ? err.cause : err;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return code === '40P01' || code === '40001';
}

async function translated<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw translateDbError(err);
  }
}

const statementNames = new Map<string, string>();

function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (!name) {
    name = `cv_${createHash('sha1').update(sql).digest('hex').slice(0, 16)}`;
    statementNames.set(sql, name);
  }
  return name;
}

/**
 * How long past its statement_timeout a statement may go unanswered before its connection is given up. The server
 * enforces statement_timeout, so it cannot fire when the network drops traffic without a reset (a failover, a
 * partition): the socket would wait for the kernel to give up, about 15 minutes, and every request behind it too.
 */
export const CLIENT_DEADLINE_MARGIN_MS = 2000;

/** The client's deadline for a statement_timeout; 0, none, for none. */
function deadlineFor(statementTimeoutMs: number): number {
  return statementTimeoutMs === 0 ? 0 : statementTimeoutMs + CLIENT_DEADLINE_MARGIN_MS;
}

/**
 * How long a request may wait for a pool connection (the pool's connectionTimeoutMillis unless configured), and for
 * a place in a batch that will take one: past it, 503 rather than a queue that grows while PostgreSQL does not answer.
 */
export const POOL_WAIT_MS = 2000;

/** The queue deadline of a batcher whose batches each take a pool connection. */
export const POOL_QUEUE_DEADLINE = {
  ms: POOL_WAIT_MS,
  error: () => new VaultError('database_unavailable', undefined, { cause: new Error(`no pool connection for a batch in ${POOL_WAIT_MS} ms`) }),
};

export interface PostgresOptions {
  url: string;
  poolSize: number;
  applicationName?: string;
  /** How long a connection may take to open (default 2 s: a request fails fast with a 503 rather than queueing). */
  connectTimeoutMs?: number;
  /**
   * Each statement's limit (default 10 s); migrations lift it for their own transaction. The client waits
   * CLIENT_DEADLINE_MARGIN_MS longer for an answer, then destroys the connection.
   */
  statementTimeoutMs?: number;
}

export function openPostgres(options: PostgresOptions): Db {
  const statementTimeoutMs = options.statementTimeoutMs ?? 10_000;
  const poolConfig: PoolConfig = {
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs ?? POOL_WAIT_MS,
    idleTimeoutMillis: 30_000,
    application_name: options.applicationName ?? 'cardvault',
    // Probes a connection that has gone quiet; a statement in flight is bounded by the deadline in checkOut.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
  // Set on each new connection by a statement, not as startup parameters (`options`, `statement_timeout`): a
  // connection pooler such as PgBouncer refuses those it does not track, and one told to ignore them drops them.
  // Every commit is flushed before it returns, whatever the server, database or role default: an acknowledged
  // write must survive a crash on its own (README, Durability). A statement stuck behind a lock or a dying server
  // must not hold a request forever.
  const sessionSettings = `SET synchronous_commit TO on; SET statement_timeout TO ${Math.trunc(statementTimeoutMs)}`;
  const settled = new WeakSet<object>();
  const pool = new Pool(poolConfig);
  // An idle client losing its connection emits here; without a listener the process would crash.
  pool.on('error', () => undefined);

  /**
   * A connection for one statement or one transaction. Each statement on it has a deadline: past it the statement
   * rejects with database_unavailable, and release() destroys the connection instead of returning it to the pool
   * with the statement still stuck on it.
   */
  async function checkOut() {
    const client = await translated(() => pool.connect());
    let broken = false;
    let deadlineMs = deadlineFor(statementTimeoutMs);
    // The pool listens for errors only on idle clients: a connection lost while checked out would otherwise be
    // an unhandled 'error' event and end the process. The failing query rejects; the client is then discarded.
    const lost = () => {
      broken = true;
    };
    client.on('error', lost);

    const send = (query: string | QueryConfig): Promise<QueryResult> => {
      if (broken) return Promise.reject(new VaultError('database_unavailable', undefined, { cause: new Error('connection given up') }));
      const answer = client.query(query);
      if (deadlineMs === 0) return translated(() => answer);
      const limitMs = deadlineMs;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          broken = true;
          reject(new VaultError('database_unavailable', undefined, { cause: new Error(`no answer from PostgreSQL in ${limitMs} ms`) }));
        }, limitMs);
      });
      return translated(() => Promise.race([answer, late])).finally(() => clearTimeout(timer));
    };

    // Parameterised statements are prepared once per connection (named by a digest of the SQL): the
    // bench measured half the server CPU per detokenize. Scripts without parameters use the simple protocol.
    const run = async <R>(sql: string, params?: readonly unknown[]): Promise<R[]> => {
      const result = await send(params && params.length > 0 ? { name: statementName(sql), text: sql, values: params as unknown[] } : sql);
      return result.rows as R[];
    };

    if (!settled.has(client)) {
      try {
        await send(sessionSettings);
      } catch (err) {
        client.removeListener('error', lost);
        client.release(true);
        throw err;
      }
      settled.add(client);
    }

    return {
      send,
      run,
      /** A transaction's own statement limit moves its statements' deadline with it. */
      limitStatements(timeoutMs: number) {
        deadlineMs = deadlineFor(timeoutMs);
      },
      get broken() {
        return broken;
      },
      /** `discard`, or a connection lost or past its deadline: the pool destroys it rather than keep it. */
      release(discard = false) {
        client.removeListener('error', lost);
        client.release(broken || discard);
      },
    };
  }

  const once = async <R>(sql: string, params?: readonly unknown[]): Promise<R[]> => {
    const connection = await checkOut();
    try {
      const rows = await connection.run<R>(sql, params);
      connection.release();
      return rows;
    } catch (err) {
      // As pool.query does: a connection whose statement failed is not kept.
      connection.release(true);
      throw err;
    }
  };

  return {
    kind: 'postgres',
    query: (sql, params) => once(sql, params),
    async transaction(fn, options = {}) {
      const { opening, statementTimeoutMs: limit } = options;
      if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 0)) throw new RangeError('statementTimeoutMs must be a whole number of ms, 0 or more');
      const connection = await checkOut();
      let discard = false;
      try {
        // BEGIN, the transaction's own limit and the opening statement in one simple-protocol message: one round trip.
        const head = ['BEGIN'];
        if (limit !== undefined) {
          head.push(`SET LOCAL statement_timeout = ${limit}`);
          connection.limitStatements(limit);
        }
        if (opening !== undefined) head.push(opening);
        let opened: Record<string, unknown>[] = [];
        if (head.length === 1) {
          await connection.run('BEGIN');
        } else {
          const results = (await connection.send(head.join('; '))) as unknown as { rows: Record<string, unknown>[] }[];
          if (opening !== undefined) opened = results[results.length - 1]!.rows;
        }
        const result = await fn(
          {
            query: <R>(sql: string, params?: readonly unknown[]) => connection.run<R>(sql, params),
            exec: async (sql) => {
              await connection.run(sql);
            },
          },
          opened,
        );
        await connection.run('COMMIT');
        return result;
      } catch (err) {
        // A connection given up ends its transaction by closing: a ROLLBACK would wait behind the stuck statement.
        if (!connection.broken) {
          try {
            await connection.run('ROLLBACK');
          } catch {
            discard = true;
          }
        }
        throw translateDbError(err);
      } finally {
        connection.release(discard);
      }
    },
    async exclusively(lockId, fn) {
      // Not a pooled connection: `fn` may need the whole pool, and a pool of one would wait for itself.
      const holder = new Client(poolConfig);
      holder.on('error', () => undefined);
      await translated(() => holder.connect());
      try {
        // Waiting for the lock is not a stuck statement, whatever the role's default limit.
        await translated(() => holder.query('SET statement_timeout TO 0'));
        await translated(() => holder.query('SELECT pg_advisory_lock($1)', [lockId]));
        return await fn();
      } finally {
        // Ending the session releases the lock, even when the unlock cannot be sent.
        await holder.end().catch(() => undefined);
      }
    },
    exec: async (sql) => {
      await once(sql);
    },
    ping: async () => {
      await once('SELECT 1');
    },
    close: () => pool.end(),
  };
}

/** PGlite returns bytea as Uint8Array; the rest of the code works with Buffers. */
function normalizeRow(row: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(row)) {
    if (value instanceof Uint8Array && !Buffer.isBuffer(value)) {
      row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
  }
  return row;
}

export async function openEmbedded(options: { dataDir: string }): Promise<Db> {
  const { PGlite: PGliteClass } = await import('@electric-sql/pglite');
  // Ciphertext and wrapped keys live here: readable by the vault's user only.
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  // One process at a time: a second one on this directory would silently lose committed writes.
  const unlock = lockDataDir(options.dataDir);
  const db: PGlite = await PGliteClass.create(options.dataDir).catch((err: unknown) => {
    unlock();
    throw err;
  });
  const run = async <R>(q: Pick<PGlite, 'query'>, sql: string, params?: readonly unknown[]) =>
    translated(async () => {
      const result = await q.query<Record<string, unknown>>(sql, params as unknown[]);
      return result.rows.map(normalizeRow) as R[];
    });
  // PGlite runs one transaction at a time, and a statement outside it waits for it to end: a pool statement (or
  // another transaction) issued from inside a transaction would wait for itself forever. The open transaction
  // marks its async context, and such a statement fails at once, naming the mistake, instead of freezing the vault.
  const inTransaction = new AsyncLocalStorage<{ open: boolean }>();
  const outsideTransactions = () => {
    if (inTransaction.getStore()?.open) {
      throw new Error('a pool statement from inside an open transaction would wait for that transaction forever: use the transaction, or do it before');
    }
  };
  return {
    kind: 'embedded',
    query: async (sql, params) => {
      outsideTransactions();
      return run(db, sql, params);
    },
    transaction: async (fn, options = {}) => {
      const { opening } = options;
      outsideTransactions();
      return translated(() =>
        db.transaction(async (tx) => {
          const marker = { open: true };
          try {
            return await inTransaction.run(marker, async () =>
              fn(
                {
                  query: (sql, params) => run(tx, sql, params),
                  exec: async (sql) => {
                    await translated(() => tx.exec(sql));
                  },
                },
                opening === undefined ? [] : await run(tx, opening),
              ),
            );
          } finally {
            // Work `fn` left running (never awaited) may use the pool once the transaction is over.
            marker.open = false;
          }
        }),
      );
    },
    // The data directory's lock already keeps every other process off this database.
    exclusively: (_lockId, fn) => fn(),
    exec: async (sql) => {
      outsideTransactions();
      await translated(() => db.exec(sql));
    },
    ping: async () => {
      outsideTransactions();
      await run(db, 'SELECT 1');
    },
    close: () => db.close().finally(unlock),
  };
}
