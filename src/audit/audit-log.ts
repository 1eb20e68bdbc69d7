// The audit trail's writer: queues events and commits them in batches (group commit), resolving each
// caller only after its batch is durably in PostgreSQL.
import type { AuditInput, Clock, TransactionalAuditTrail } from '../domain/ports';
import { VaultError } from '../errors';
import type { Logger } from '../log';
import type { AuditHead, AuditRow, PgAuditStore } from '../store/audit-store';
import type { Queryable } from '../store/db';
import { eventBytes, eventPieces, toAuditEvent } from './event';
import { leafHash, MerkleFrontier } from './merkle';

/** Large enough to absorb a burst in one transaction, small enough to keep one statement modest. */
const MAX_BATCH = 500;
/**
 * A queue this short at the start of a batch, after a batch no longer, is appended in one statement
 * (PgAuditStore.appendInOneStatement); otherwise, under load, the batch is taken once the head is locked.
 */
export const ONE_STATEMENT_MAX_EVENTS = 4;

interface Pending {
  input: AuditInput;
  time: Date;
  /** Monotonic, for the observer: the clock can be a test's. */
  queuedAt: bigint;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class AuditLog implements TransactionalAuditTrail<Queryable> {
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  /** Events in the last batch committed: a long one means load, when batches should keep growing. */
  #lastBatch = 0;

  constructor(
    private readonly store: PgAuditStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Told of each committed batch (metrics): how long each event waited from record() to its commit, in seconds. */
    private readonly onCommit?: (waitSeconds: readonly number[]) => void,
    /** The longest queue appended in one statement; 0: always take the batch under the lock. */
    private readonly oneStatementMaxEvents = ONE_STATEMENT_MAX_EVENTS,
  ) {}

  record(input: AuditInput): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ input, time: this.clock.now(), queuedAt: process.hrtime.bigint(), resolve, reject });
      // While one batch commits, the next one gathers: that is the whole group-commit mechanism.
      this.#flushing ??= this.drain();
    });
  }

  /**
   * Appends the events in the caller's transaction `tx`, not the queue: they commit with the change they record or
   * not at all. The head row stays locked until `tx` ends, holding up every other append: put this last, then commit.
   */
  async recordWithin(tx: Queryable, inputs: readonly AuditInput[]): Promise<void> {
    if (inputs.length === 0) return;
    const time = this.clock.now();
    await this.store.appendInOneStatement(
      inputs.map((input) => ({ pieces: eventPieces(input, time), tenantId: input.tenantId, recordedAt: time })),
      tx,
    );
  }

  /** Waits until everything queued so far is committed or failed. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  /**
   * Runs until the queue is empty. It clears #flushing itself, in the same turn as it finds the queue empty: a
   * record() made by a caller its last batch resolved must start a new drain, not join one that has finished.
   */
  private async drain(): Promise<void> {
    try {
      // The first batch is taken after an await, so record() has stored this promise in #flushing by then.
      await Promise.resolve();
      while (this.#queue.length > 0) await this.commitNext();
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Commits the next batch and settles its callers: resolved once durable, rejected if it could not be.
   *
   * Two ways, one result (the same rows, chain and frontier). At a moderate rate (a short queue after a short
   * batch) the queue is sent whole in one statement, and PostgreSQL holds the head lock only while it appends: a
   * process that pauses (a garbage collection, a descheduled core) then holds up no other process's events,
   * which is what made the slowest 1% of requests at 1,000/s. Under load the batch is taken once the head is
   * locked: whatever queued while another instance held the lock rides along, so batches grow exactly when the
   * lock is contended. Appending every batch in one statement shrank batches and cost throughput (README,
   * "Performance").
   */
  private async commitNext(): Promise<void> {
    let batch: Pending[] = [];
    try {
      if (this.#queue.length <= this.oneStatementMaxEvents && this.#lastBatch <= this.oneStatementMaxEvents) {
        batch = this.#queue.splice(0, this.#queue.length);
        await this.store.appendInOneStatement(
          batch.map((pending) => ({ pieces: eventPieces(pending.input, pending.time), tenantId: pending.input.tenantId, recordedAt: pending.time })),
        );
      } else {
        await this.store.appendBatch((head) => {
          batch = this.#queue.splice(0, MAX_BATCH);
          return seal(head, batch);
        });
      }
      this.#lastBatch = batch.length;
      for (const pending of batch) pending.resolve();
      if (this.onCommit) {
        const committedAt = process.hrtime.bigint();
        this.onCommit(batch.map((pending) => Number(committedAt - pending.queuedAt) / 1e9));
      }
    } catch (err) {
      // A failure before the lock (no connection) leaves a locked batch untaken: fail what is queued now.
      if (batch.length === 0) batch = this.#queue.splice(0, MAX_BATCH);
      this.log.error({ err, events: batch.length }, 'audit write failed');
      const failure = new VaultError('audit_unavailable', undefined, { cause: err });
      for (const pending of batch) pending.reject(failure);
    }
  }
}

/** Numbers, chains and hashes a batch on top of the locked head. */
function seal(head: AuditHead, batch: Pending[]): { rows: AuditRow[]; head: AuditHead } {
  const frontier = MerkleFrontier.fromJSON(head.frontier);
  let prev = head.lastLeafHash;
  const rows = batch.map((pending, i) => {
    const seq = head.size + i;
    const event = toAuditEvent(pending.input, pending.time, seq, prev);
    const bytes = eventBytes(event);
    const hash = leafHash(bytes);
    frontier.append(hash);
    prev = hash;
    return { seq, tenantId: pending.input.tenantId, recordedAt: pending.time, event: bytes.toString('utf8'), leafHash: hash };
  });
  return { rows, head: { size: head.size + batch.length, lastLeafHash: prev, frontier: frontier.toJSON() } };
}
