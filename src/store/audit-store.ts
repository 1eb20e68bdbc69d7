// The audit log in PostgreSQL: batched appends under the head-row lock, reads for exports and proofs.
import { VaultError } from '../errors';
import type { Db, Queryable } from './db';

export interface AuditHead {
  size: number;
  lastLeafHash: Buffer | null;
  /** Compact range of the tree at `size` (MerkleFrontier JSON; opaque here). */
  frontier: unknown;
}

export interface AuditRow {
  seq: number;
  tenantId: string | null;
  recordedAt: Date;
  event: string;
  leafHash: Buffer;
}

export interface CheckpointRow {
  treeSize: number;
  rootHash: Buffer;
  frontier: unknown;
  jws: string;
  createdAt: Date;
}

const toCheckpoint = (r: { tree_size: string; root_hash: Buffer; frontier: unknown; jws: string; created_at: Date }): CheckpointRow => ({
  treeSize: Number(r.tree_size),
  rootHash: r.root_hash,
  frontier: r.frontier,
  jws: r.jws,
  createdAt: r.created_at,
});

export class PgAuditStore {
  constructor(private readonly db: Db) {}

  /**
   * Appends one batch: `prepare` turns the locked head into the rows and the next head. The head row lock
   * serializes appends from every instance, so sequence numbers are gap-free and the hash chain unbroken.
   */
  async appendBatch(prepare: (head: AuditHead) => { rows: AuditRow[]; head: AuditHead }): Promise<void> {
    // BEGIN and the lock travel together, then the append, then COMMIT: three round trips per batch.
    await this.db.transaction(async (tx, opened) => {
      const current = opened[0] as unknown as LockedHead;
      const size = Number(current.size);
      const { rows, head } = prepare({ size, lastLeafHash: current.last_leaf_hash, frontier: current.frontier });
      const order = Number(current.time_ordered_to) === size ? timeOrderOf(current) : await timeOrderRestarted(tx, size);
      await appendRows(tx, rows, head, order);
    }, { opening: `SELECT size, last_leaf_hash, frontier, ${TIME_ORDER_COLUMNS} FROM audit_head WHERE id = 1 FOR UPDATE` });
  }

  /**
   * Appends events in one autocommit statement: PostgreSQL locks the head, numbers, chains and hashes them and
   * moves the head (migrations/0016), so the lock is held for no round trip. `pieces` are eventPieces' three.
   * `within`: a caller's transaction instead, which then holds the head's lock until it ends (keep it to its commit).
   */
  async appendInOneStatement(
    events: readonly { pieces: readonly [string, string, string]; tenantId: string | null; recordedAt: Date }[],
    within: Queryable = this.db,
  ): Promise<void> {
    await within.query('SELECT audit_append($1::text[], $2::uuid[], $3::timestamptz[])', [
      events.flatMap((e) => e.pieces),
      events.map((e) => e.tenantId),
      events.map((e) => e.recordedAt),
    ]);
  }

  async head(): Promise<AuditHead> {
    const [row] = await this.db.query<{ size: string; last_leaf_hash: Buffer | null; frontier: unknown }>(
      'SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1',
    );
    return { size: Number(row!.size), lastLeafHash: row!.last_leaf_hash, frontier: row!.frontier };
  }

  async events(fromSeq: number, toSeq: number): Promise<AuditRow[]> {
    const rows = await this.db.query<{ seq: string; tenant_id: string | null; recorded_at: Date; event: string; leaf_hash: Buffer }>(
      'SELECT seq, tenant_id, recorded_at, event, leaf_hash FROM audit_events WHERE seq >= $1 AND seq < $2 ORDER BY seq',
      [fromSeq, toSeq],
    );
    return rows.map((r) => ({ seq: Number(r.seq), tenantId: r.tenant_id, recordedAt: r.recorded_at, event: r.event, leafHash: r.leaf_hash }));
  }

  async leafHashes(fromSeq: number, toSeq: number): Promise<Buffer[]> {
    const rows = await this.db.query<{ leaf_hash: Buffer }>(
      'SELECT leaf_hash FROM audit_events WHERE seq >= $1 AND seq < $2 ORDER BY seq',
      [fromSeq, toSeq],
    );
    return rows.map((r) => r.leaf_hash);
  }

  /**
   * The first sequence number recorded at or after `time` (the log's size when there is none): the first event, in
   * log order, whose own time is at or after it. A binary search of the ordered rows (migrations/0019), where each
   * row's recorded_at is the latest time at or before it, so the first row at or after `time` is that event; rows
   * appended before those, which keep their own times, are read only when `time` falls among them.
   */
  async seqAtTime(time: Date): Promise<number> {
    const [head] = await this.db.query<{ size: string; time_ordered_from: string; time_ordered_to: string; time_before_ordered: Date | null }>(
      'SELECT size, time_ordered_from, time_ordered_to, time_before_ordered FROM audit_head WHERE id = 1',
    );
    const size = Number(head!.size);
    const orderedFrom = Number(head!.time_ordered_from);
    const orderedTo = Number(head!.time_ordered_to);
    if (head!.time_before_ordered !== null && time <= head!.time_before_ordered) {
      // An event before the ordered rows has a time at or after `time`, so the first such is the answer: found as
      // before 0019, by a scan, but of those rows only, whose number no longer grows.
      const [row] = await this.db.query<{ seq: string | null }>(
        'SELECT min(seq) AS seq FROM audit_events WHERE recorded_at >= $1 AND seq < $2',
        [time, orderedFrom],
      );
      if (row?.seq == null) throw new VaultError('internal_error', 'the audit log lacks the events its head describes');
      return Number(row.seq);
    }
    // By halves rather than the recorded_at index: rows raised to one time tie, as many as follow a clock running
    // ahead, and the first of them is what is wanted. About 25 primary-key reads at 30 million events.
    const [found] = await this.db.query<{ seq: string }>(
      `WITH RECURSIVE halves (lo, hi) AS (
         SELECT $2::bigint, $3::bigint
         UNION ALL
         SELECT CASE WHEN e.recorded_at >= $1::timestamptz THEN h.lo ELSE e.seq + 1 END,
                CASE WHEN e.recorded_at >= $1::timestamptz THEN e.seq ELSE h.hi END
         FROM halves h JOIN audit_events e ON e.seq = (h.lo + h.hi) / 2
         WHERE h.lo < h.hi
       )
       SELECT lo AS seq FROM halves WHERE lo = hi`,
      [time, orderedFrom, orderedTo],
    );
    if (!found) throw new VaultError('internal_error', 'the audit log has a gap below its head');
    if (Number(found.seq) < orderedTo || orderedTo === size) return Number(found.seq);
    // A vault of the previous release appended last, during a rolling upgrade: its few rows keep their own times.
    const [late] = await this.db.query<{ seq: string }>(
      'SELECT seq FROM audit_events WHERE seq >= $1 AND seq < $2 AND recorded_at >= $3 ORDER BY seq LIMIT 1',
      [orderedTo, size, time],
    );
    return late ? Number(late.seq) : size;
  }

  async insertCheckpoint(c: Omit<CheckpointRow, 'createdAt'>): Promise<void> {
    await this.db.query(
      'INSERT INTO audit_checkpoints (tree_size, root_hash, frontier, jws) VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING',
      [c.treeSize, c.rootHash, JSON.stringify(c.frontier), c.jws],
    );
  }

  async latestCheckpoint(): Promise<CheckpointRow | undefined> {
    const rows = await this.db.query<{ tree_size: string; root_hash: Buffer; frontier: unknown; jws: string; created_at: Date }>(
      'SELECT tree_size, root_hash, frontier, jws, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1',
    );
    return rows[0] && toCheckpoint(rows[0]);
  }

  /** The latest checkpoint at or below a size: where an export or proof can start from. */
  async checkpointAtOrBelow(size: number): Promise<CheckpointRow | undefined> {
    const rows = await this.db.query<{ tree_size: string; root_hash: Buffer; frontier: unknown; jws: string; created_at: Date }>(
      'SELECT tree_size, root_hash, frontier, jws, created_at FROM audit_checkpoints WHERE tree_size <= $1 ORDER BY tree_size DESC LIMIT 1',
      [size],
    );
    return rows[0] && toCheckpoint(rows[0]);
  }

  async checkpointsBetween(fromSize: number, toSize: number): Promise<CheckpointRow[]> {
    const rows = await this.db.query<{ tree_size: string; root_hash: Buffer; frontier: unknown; jws: string; created_at: Date }>(
      'SELECT tree_size, root_hash, frontier, jws, created_at FROM audit_checkpoints WHERE tree_size > $1 AND tree_size <= $2 ORDER BY tree_size',
      [fromSize, toSize],
    );
    return rows.map(toCheckpoint);
  }
}

/**
 * Where recorded_at follows sequence order (migrations/0019), as the head keeps it: rows [orderedFrom, orderedTo)
 * each hold the latest time at or before them; `beforeOrdered` is the latest time before them, `last` the row's
 * before orderedTo. Both ways of appending keep it (audit_append in SQL, appendRows here) and must agree.
 */
interface TimeOrder {
  orderedFrom: number;
  orderedTo: number;
  beforeOrdered: Date | null;
  last: Date | null;
}

const TIME_ORDER_COLUMNS = 'time_ordered_from, time_ordered_to, time_before_ordered, time_last';

interface LockedHead {
  size: string;
  last_leaf_hash: Buffer | null;
  frontier: unknown;
  time_ordered_from: string;
  time_ordered_to: string;
  time_before_ordered: Date | null;
  time_last: Date | null;
}

const timeOrderOf = (head: LockedHead): TimeOrder => ({
  orderedFrom: Number(head.time_ordered_from),
  orderedTo: Number(head.time_ordered_to),
  beforeOrdered: head.time_before_ordered,
  last: head.time_last,
});

/**
 * The head's size moved without its time order: a vault of the previous release appended last (a rolling upgrade),
 * its rows as stamped. The ordered rows start again here, from the latest time in the log.
 */
async function timeOrderRestarted(tx: Queryable, size: number): Promise<TimeOrder> {
  const [row] = await tx.query<{ latest: Date | null }>('SELECT max(recorded_at) AS latest FROM audit_events');
  const latest = row?.latest ?? null;
  return { orderedFrom: size, orderedTo: size, beforeOrdered: latest, last: latest };
}

/** Inserts the rows and moves the head in one statement: one round trip less while the head is locked. */
async function appendRows(tx: Queryable, rows: AuditRow[], head: AuditHead, order: TimeOrder): Promise<void> {
  // Each row's recorded_at, not its event's time (the JSON keeps that): the latest time at or before it.
  let last = order.last;
  const times = rows.map((row) => (last = last === null || row.recordedAt > last ? row.recordedAt : last));
  const params: unknown[] = [head.size, head.lastLeafHash, JSON.stringify(head.frontier), order.orderedFrom, order.beforeOrdered, last];
  const values = rows.map((row, i) => {
    params.push(row.seq, row.tenantId, times[i], row.event, row.leafHash);
    const b = 6 + i * 5;
    return `($${b + 1}::bigint, $${b + 2}::uuid, $${b + 3}::timestamptz, $${b + 4}::text, $${b + 5}::bytea)`;
  });
  await tx.query(
    `WITH appended AS (
       INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash) VALUES ${values.join(', ')} RETURNING seq
     )
     UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3,
       time_ordered_from = $4, time_ordered_to = $1, time_before_ordered = $5, time_last = $6
     WHERE id = 1 AND (SELECT count(*) FROM appended) >= 0`,
    params,
  );
}
