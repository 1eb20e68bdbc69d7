// The auditor's export: NDJSON of the events in a time range, with everything needed to check them offline —
// the signed checkpoints covering them, the compact range they start from, and hashes of the leaves in between.
import type { PgAuditStore } from '../store/audit-store';
import type { Checkpointer } from './checkpointer';

export const EXPORT_FORMAT = 'cardvault-audit-export';
export const EXPORT_VERSION = 1;
const CHUNK = 1000;

export interface ExportScope {
  /** Null exports every tenant's events (admin); otherwise other tenants' events appear only as leaf hashes. */
  tenantId: string | null;
  from: Date | null;
  to: Date | null;
}

export async function* exportAuditLog(store: PgAuditStore, checkpointer: Checkpointer, origin: string, scope: ExportScope): AsyncGenerator<string> {
  // A checkpoint at the current head covers every event in the range, including the newest.
  const covering = await checkpointer.checkpointNow();
  const end = covering?.treeSize ?? 0;
  // Never past the covering checkpoint: events appended since (by any instance) are outside this export, and a
  // start beyond its end could not be verified.
  const firstSeq = Math.min(scope.from ? await store.seqAtTime(scope.from) : 0, end);
  const endSeq = Math.min(scope.to ? await store.seqAtTime(scope.to) : end, end);
  // Start at a signed checkpoint at or before the range, so the starting compact range is itself verifiable.
  const start = await store.checkpointAtOrBelow(firstSeq);
  const startSize = start?.treeSize ?? 0;

  yield line({
    type: 'header',
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    origin,
    tenant: scope.tenantId,
    from: scope.from?.toISOString() ?? null,
    to: scope.to?.toISOString() ?? null,
    first_seq: firstSeq,
    end_seq: endSeq,
  });
  if (start) yield line({ type: 'checkpoint', jws: start.jws });
  for (const checkpoint of await store.checkpointsBetween(startSize, end)) yield line({ type: 'checkpoint', jws: checkpoint.jws });
  yield line({ type: 'start', tree_size: startSize, frontier: start?.frontier ?? { size: 0, hashes: [] } });

  for (let from = startSize; from < end; from += CHUNK) {
    for (const row of await store.events(from, Math.min(from + CHUNK, end))) {
      const inRange = row.seq >= firstSeq && row.seq < endSeq;
      const inScope = scope.tenantId === null || row.tenantId === scope.tenantId;
      yield inRange && inScope
        ? `{"type":"event","seq":${row.seq},"event":${row.event}}\n`
        : line({ type: 'leaf', seq: row.seq, leaf_hash: row.leafHash.toString('base64') });
    }
  }
  yield line({ type: 'end', tree_size: end });
}

const line = (value: unknown) => `${JSON.stringify(value)}\n`;
