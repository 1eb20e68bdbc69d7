// The audit writer's queue, against a store that commits at once: an event recorded at any moment is written,
// including one recorded by a caller the moment its previous event's batch resolved it.
import { AuditLog } from '../../src/audit/audit-log';
import type { AuditInput } from '../../src/domain/ports';
import { createLogger } from '../../src/log';
import type { AuditHead, AuditRow, PgAuditStore } from '../../src/store/audit-store';

/** Holds the head in memory; each append is a resolved promise, as a fast database's would be. */
function memoryStore(): { store: PgAuditStore; rows: AuditRow[] } {
  const rows: AuditRow[] = [];
  let head: AuditHead = { size: 0, lastLeafHash: null, frontier: { size: 0, hashes: [] } };
  const store = {
    appendBatch: async (prepare: (head: AuditHead) => { rows: AuditRow[]; head: AuditHead }) => {
      const next = prepare(head);
      rows.push(...next.rows);
      head = next.head;
    },
  } as unknown as PgAuditStore;
  return { store, rows };
}

const input = (i: number): AuditInput => ({ tenantId: null, principal: 'cli', action: 'card.read', outcome: 'success', details: { i } });

/** Rejects if `promise` has not settled within `ms`: a lost event never settles. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms).unref())]);
}

describe('AuditLog queue', () => {
  it('writes an event recorded right after the previous one resolved, with nothing else recorded after it', async () => {
    const { store, rows } = memoryStore();
    const log = new AuditLog(store, { now: () => new Date() }, createLogger({ level: 'silent' }), undefined, 0);
    // Each next event is recorded in the very callback its predecessor's commit resolved.
    await within(log.record(input(0)).then(() => log.record(input(1))).then(() => log.record(input(2))), 1000);
    expect(rows.map((r) => r.seq)).toEqual([0, 1, 2]);
  });

  it('flush waits for an event recorded from a resolved caller, so shutdown does not drop it', async () => {
    const { store, rows } = memoryStore();
    const log = new AuditLog(store, { now: () => new Date() }, createLogger({ level: 'silent' }), undefined, 0);
    const second = log.record(input(0)).then(() => log.record(input(1)));
    await new Promise((resolve) => setImmediate(resolve));
    await within(log.flush(), 1000);
    expect(rows).toHaveLength(2);
    await second;
  });

  it('appends in one statement at a moderate rate, and takes the batch under the lock once the queue or the last batch is long', async () => {
    const ways: string[] = [];
    const { store } = memoryStore();
    const locked = store.appendBatch.bind(store);
    Object.assign(store, {
      appendBatch: async (prepare: Parameters<PgAuditStore['appendBatch']>[0]) => {
        await locked((head) => {
          const next = prepare(head);
          ways.push(`locked ${next.rows.length}`);
          return next;
        });
      },
      appendInOneStatement: async (events: unknown[]) => {
        ways.push(`one statement ${events.length}`);
      },
    });
    const log = new AuditLog(store, { now: () => new Date() }, createLogger({ level: 'silent' }), undefined, 4);
    const burst = (n: number) => within(Promise.all(Array.from({ length: n }, (_, i) => log.record(input(i)))), 1000);
    await burst(1);
    await burst(4);
    await burst(5);
    // A short queue after a long batch: still under load, the lock gathers more.
    await burst(2);
    await burst(3);
    expect(ways).toEqual(['one statement 1', 'one statement 4', 'locked 5', 'locked 2', 'one statement 3']);
  });
});
