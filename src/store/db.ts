// The one SQL helper: a small interface over node-postgres and PGlite, translating driver errors once.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Pool, type PoolConfig } from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import { VaultError } from '../errors';

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'embedded';
  /**
   * Runs `fn` in a transaction. `opening`, a statement without parameters (typically a row lock), is sent with
   * BEGIN in one round trip and its rows handed to `fn`.
   */
  transaction<T>(fn: (tx: Queryable, opened: Record<string, unknown>[]) => Promise<T>, opening?: string): Promise<T>;
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

export interface PostgresOptions {
  url: string;
  poolSize: number;
  applicationName?: string;
  /** How long a connection may take to open (default 2 s: a request fails fast with a 503 rather than queueing). */
  connectTimeoutMs?: number;
  /**
   * false: commits return before their WAL is flushed. Only for writes that are acknowledged after a later
   * synchronous commit (the audit event): WAL is flushed in order, so that commit makes them durable too.
   */
  synchronousCommit?: boolean;
  /** Each statement's limit (default 10 s); migrations lift it for their own transaction. */
  statementTimeoutMs?: number;
}

export function openPostgres(options: PostgresOptions): Db {
  const poolConfig: PoolConfig = {
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
    idleTimeoutMillis: 30_000,
    application_name: options.applicationName ?? 'cardvault',
    // A statement stuck behind a lock or a dying server must not hold a request forever.
    statement_timeout: options.statementTimeoutMs ?? 10_000,
    // Always said, never inherited: a server, database or role default of off would make every acknowledgement
    // rest on an asynchronous commit.
    options: `-c synchronous_commit=${options.synchronousCommit === false ? 'off' : 'on'}`,
  };
  const pool = new Pool(poolConfig);
  // An idle client losing its connection emits here; without a listener the process would crash.
  pool.on('error', () => undefined);

  // Parameterised statements are prepared once per connection (named by a digest of the SQL): the
  // bench measured half the server CPU per detokenize. Scripts without parameters use the simple protocol.
  const run = <R>(q: { query: Pool['query'] }, sql: string, params?: readonly unknown[]) =>
    translated(async () => {
      const query = params && params.length > 0 ? { name: statementName(sql), text: sql, values: params as unknown[] } : sql;
      return (await q.query(query)).rows as R[];
    });

  return {
    kind: 'postgres',
    query: (sql, params) => run(pool, sql, params),
    async transaction(fn, opening) {
      const client = await translated(() => pool.connect());
      let broken = false;
      // The pool listens for errors only on idle clients: a connection lost while checked out would otherwise be
      // an unhandled 'error' event and end the process. The failing query rejects; the client is then discarded.
      const lost = () => {
        broken = true;
      };
      client.on('error', lost);
      try {
        let opened: Record<string, unknown>[] = [];
        if (opening === undefined) {
          await run(client, 'BEGIN');
        } else {
          // Two statements in one simple-protocol message: one round trip instead of two.
          const results = (await translated(() => client.query(`BEGIN; ${opening}`))) as unknown as { rows: Record<string, unknown>[] }[];
          opened = results[results.length - 1]!.rows;
        }
        const result = await fn(
          {
            query: (sql, params) => run(client, sql, params),
            exec: async (sql) => {
              await run(client, sql);
            },
          },
          opened,
        );
        await run(client, 'COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
        throw translateDbError(err);
      } finally {
        client.removeListener('error', lost);
        client.release(broken);
      }
    },
    exec: async (sql) => {
      await translated(() => pool.query(sql));
    },
    ping: async () => {
      await run(pool, 'SELECT 1');
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
  const db: PGlite = await PGliteClass.create(options.dataDir);
  const run = async <R>(q: Pick<PGlite, 'query'>, sql: string, params?: readonly unknown[]) =>
    translated(async () => {
      const result = await q.query<Record<string, unknown>>(sql, params as unknown[]);
      return result.rows.map(normalizeRow) as R[];
    });
  return {
    kind: 'embedded',
    query: (sql, params) => run(db, sql, params),
    transaction: (fn, opening) =>
      translated(() =>
        db.transaction(async (tx) =>
          fn(
            {
              query: (sql, params) => run(tx, sql, params),
              exec: async (sql) => {
                await translated(() => tx.exec(sql));
              },
            },
            opening === undefined ? [] : await run(tx, opening),
          ),
        ),
      ),
    exec: async (sql) => {
      await translated(() => db.exec(sql));
    },
    ping: async () => {
      await run(db, 'SELECT 1');
    },
    close: () => db.close(),
  };
}
