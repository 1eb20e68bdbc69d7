// The audit log in PostgreSQL: batched appends under the head-row lock, reads for exports and proofs.
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
      const current = opened[0] as { size: string; last_leaf_hash: Buffer | null; frontier: unknown };
      const { rows, head } = prepare({ size: Number(current.size), lastLeafHash: current.last_leaf_hash, frontier: current.frontier });
      await appendRows(tx, rows, head);
    }, { opening: 'SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE' });
  }

  /**
   * Appends events in one autocommit statement: PostgreSQL locks the head, numbers, chains and hashes them and
   * moves the head (migrations/0016), so the lock is held for no round trip. `pieces` are eventPieces' three.
   */
  async appendInOneStatement(events: readonly { pieces: readonly [string, string, string]; tenantId: string | null; recordedAt: Date }[]): Promise<void> {
    await this.db.query('SELECT audit_append($1::text[], $2::uuid[], $3::timestamptz[])', [
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

  /** The first sequence number recorded at or after `time` (the log's size when there is none). */
  async seqAtTime(time: Date): Promise<number> {
    const [row] = await this.db.query<{ seq: string | null }>('SELECT min(seq) AS seq FROM audit_events WHERE recorded_at >= $1', [time]);
    return row?.seq == null ? (await this.head()).size : Number(row.seq);
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

/** Inserts the rows and moves the head in one statement: one round trip less while the head is locked. */
async function appendRows(tx: Queryable, rows: AuditRow[], head: AuditHead): Promise<void> {
  const params: unknown[] = [head.size, head.lastLeafHash, JSON.stringify(head.frontier)];
  const values = rows.map((row, i) => {
    params.push(row.seq, row.tenantId, row.recordedAt, row.event, row.leafHash);
    const b = 3 + i * 5;
    return `($${b + 1}::bigint, $${b + 2}::uuid, $${b + 3}::timestamptz, $${b + 4}::text, $${b + 5}::bytea)`;
  });
  await tx.query(
    `WITH appended AS (
       INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash) VALUES ${values.join(', ')} RETURNING seq
     )
     UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1 AND (SELECT count(*) FROM appended) >= 0`,
    params,
  );
}
