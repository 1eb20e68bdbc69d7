// Checks an export offline: the layout the exporter writes, checkpoint signatures, sequence continuity, the hash
// chain, every checkpoint's root recomputed from the leaves, and the header's range against the lines. Reports the
// first bad event by sequence number. Anything malformed is a reported failure, never an exception.
import { verifyCheckpointJws } from '../crypto/checkpoint-signer';
import { canonicalJson } from './canonical-json';
import type { CheckpointPayload } from './checkpointer';
import { EXPORT_FORMAT, EXPORT_VERSION } from './export';
import { canonicalHash, isSize, leafHash, MerkleFrontier } from './merkle';

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  /** The first event found altered, missing or out of place. */
  firstBadSeq: number | null;
  events: number;
  leaves: number;
  checkpoints: number;
  treeSize: number;
}

class Failure extends Error {
  constructor(message: string, readonly seq: number | null = null) {
    super(message);
  }
}

/** What the header says was asked for. Events appear for [firstSeq, endSeq) only; everything else is a leaf hash. */
interface Header {
  origin: string;
  tenant: string | null;
  from: string | null;
  to: string | null;
  firstSeq: number;
  endSeq: number;
}


export async function verifyExport(lines: AsyncIterable<string> | Iterable<string>, jwks: { keys: unknown[] }): Promise<VerifyReport> {
  const report: VerifyReport = { ok: false, problems: [], firstBadSeq: null, events: 0, leaves: 0, checkpoints: 0, treeSize: 0 };
  try {
    await check(lines, jwks, report);
    report.ok = true;
  } catch (err) {
    if (!(err instanceof Failure)) throw err;
    report.problems.push(err.message);
    report.firstBadSeq = err.seq;
  }
  return report;
}

/**
 * The exporter writes: one header; the checkpoints in increasing tree size, the first at the start size (when it
 * is above 0) and the last at the end size; one start; one event or leaf line per sequence number; one end.
 * Any other layout is refused, so every checkpoint is known before the first leaf and each root is compared when
 * the leaves reach its size.
 */
async function check(lines: AsyncIterable<string> | Iterable<string>, jwks: { keys: unknown[] }, report: VerifyReport): Promise<void> {
  let header: Header | undefined;
  const roots = new Map<number, string>();
  let lastCheckpoint = 0;
  let frontier: MerkleFrontier | undefined;
  let previous: { seq: number; hash: Buffer } | undefined;
  let ended = false;
  let lineNo = 0;

  for await (const raw of lines) {
    lineNo += 1;
    if (raw.trim() === '') continue;
    if (ended) throw new Failure(`line ${lineNo}: data after the end line`);
    const record = parse(raw, lineNo);
    if (!header && record.type !== 'header') throw new Failure(`line ${lineNo}: the export does not begin with a header line`);
    switch (record.type) {
      case 'header':
        if (header) throw new Failure(`line ${lineNo}: a second header line`);
        header = readHeader(record);
        break;
      case 'checkpoint': {
        if (frontier) throw new Failure(`line ${lineNo}: a checkpoint after the start line; every checkpoint comes before it`);
        const payload = await checkpointPayload(record.jws, jwks, header!.origin);
        if (payload.tree_size <= lastCheckpoint) {
          throw new Failure(`line ${lineNo}: a checkpoint at tree size ${payload.tree_size} follows one at ${lastCheckpoint}; they must increase`);
        }
        roots.set(payload.tree_size, payload.root_hash);
        lastCheckpoint = payload.tree_size;
        report.checkpoints += 1;
        break;
      }
      case 'start': {
        if (frontier) throw new Failure(`line ${lineNo}: a second start line`);
        frontier = startFrontier(record);
        const size = frontier.size;
        if (size > 0 && roots.get(size) !== frontier.root().toString('base64')) {
          throw new Failure(`the starting range at tree size ${size} does not match a signed checkpoint`, size);
        }
        const lowest = roots.keys().next();
        if (!lowest.done && lowest.value < size) throw new Failure(`a checkpoint at tree size ${lowest.value} lies before the start at ${size}`);
        if (size > header!.firstSeq) {
          throw new Failure(`the export starts at tree size ${size}, after the first event of its range (${header!.firstSeq})`, header!.firstSeq);
        }
        break;
      }
      case 'event':
      case 'leaf': {
        if (!frontier) throw new Failure(`line ${lineNo}: a leaf before the start line`);
        const seq = frontier.size;
        if (record.seq !== seq) throw new Failure(`event ${seq} is missing or out of order (found ${String(record.seq)})`, seq);
        if (seq >= lastCheckpoint) {
          const why = `the last at tree size ${lastCheckpoint}): it was added or they were moved`;
          throw new Failure(`event ${seq} lies beyond the checkpoints listed before the start line (${why}`, seq);
        }
        const inRange = seq >= header!.firstSeq && seq < header!.endSeq;
        let hash: Buffer;
        if (record.type === 'event') {
          if (!inRange) {
            throw new Failure(`event ${seq} is outside the header's range ${header!.firstSeq}..${header!.endSeq}: the header or the lines were altered`, seq);
          }
          hash = eventLeaf(record.event, seq, previous, header!);
          report.events += 1;
        } else {
          // An all-tenant export has no out-of-scope events: a bare hash in its range can only hide one.
          if (inRange && header!.tenant === null) {
            throw new Failure(`event ${seq} is in the range of an all-tenant export but given only as a leaf hash: it was hidden`, seq);
          }
          hash = decodeLeafHash(record.leaf_hash, seq);
          report.leaves += 1;
        }
        frontier.append(hash);
        previous = { seq, hash };
        const expected = roots.get(frontier.size);
        if (expected !== undefined && expected !== frontier.root().toString('base64')) {
          throw new Failure(`the root at tree size ${frontier.size} does not match its signed checkpoint: event ${seq} or an earlier one was altered`, seq);
        }
        break;
      }
      case 'end': {
        if (!frontier) throw new Failure(`line ${lineNo}: an end line before the start line`);
        const size = record.tree_size;
        if (size !== frontier.size) throw new Failure(`the export ends at ${frontier.size} leaves, not ${String(size)}: it is truncated`, frontier.size);
        if (size < lastCheckpoint) {
          throw new Failure(`the export ends at tree size ${size} but carries a signed checkpoint at ${lastCheckpoint}: it is truncated`, size);
        }
        // The leaves already matched this root on the way; stated again so the end never rests on a size alone.
        if (size > 0 && roots.get(size) !== frontier.root().toString('base64')) throw new Failure(`no signed checkpoint covers tree size ${size}`, size);
        if (header!.endSeq > size) throw new Failure(`the header's range ends at ${header!.endSeq}, beyond the export's end at ${size}: it is truncated`, size);
        if (header!.to === null && header!.endSeq !== size) {
          throw new Failure(`the header names no end time, so its end_seq ${header!.endSeq} must be the export's end ${size}`, Math.min(header!.endSeq, size));
        }
        report.treeSize = size;
        ended = true;
        break;
      }
      default:
        throw new Failure(`line ${lineNo}: unknown record type`);
    }
  }
  if (!ended) throw new Failure(`the export has no end line: it is truncated after ${frontier?.size ?? 0} leaves`, frontier?.size ?? 0);
}

function readHeader(record: Record<string, unknown>): Header {
  if (record.format !== EXPORT_FORMAT || record.version !== EXPORT_VERSION) throw new Failure('not a cardvault audit export (v1)');
  const { origin, tenant, from, to, first_seq: firstSeq, end_seq: endSeq } = record;
  if (typeof origin !== 'string') throw new Failure('the header names no origin');
  if (!isNullOrString(tenant) || !isNullOrString(from) || !isNullOrString(to)) throw new Failure('the header has a malformed tenant, from or to');
  if (!isSize(firstSeq) || !isSize(endSeq)) throw new Failure('the header has no valid first_seq and end_seq');
  if (from === null && firstSeq !== 0) throw new Failure(`the header names no start time, so its first_seq must be 0, not ${firstSeq}`, 0);
  return { origin, tenant, from, to, firstSeq, endSeq };
}

function startFrontier(record: Record<string, unknown>): MerkleFrontier {
  const size = record.tree_size;
  if (!isSize(size)) throw new Failure('the start line has no valid tree size');
  let frontier: MerkleFrontier;
  try {
    frontier = MerkleFrontier.fromJSON(record.frontier);
  } catch (err) {
    throw new Failure(`the starting range at tree size ${size} is malformed: ${(err as Error).message}`, size);
  }
  if (frontier.size !== size) throw new Failure('the starting range does not match its tree size', size);
  return frontier;
}

/** Recomputes an event's leaf hash from its canonical bytes and checks its place in the chain and the scope. */
function eventLeaf(event: unknown, seq: number, previous: { seq: number; hash: Buffer } | undefined, header: Header): Buffer {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new Failure(`event ${seq} is not an object`, seq);
  const body = event as { seq?: unknown; prev?: unknown; tenant?: unknown };
  if (body.seq !== seq) throw new Failure(`event ${seq} carries sequence number ${String(body.seq)}: rows were reordered`, seq);
  if (previous && body.prev !== previous.hash.toString('base64')) {
    throw new Failure(`event ${previous.seq} does not match the hash that event ${seq} recorded for it: it was altered`, previous.seq);
  }
  if (seq === 0 && body.prev !== null) throw new Failure('event 0 records a predecessor', 0);
  if (header.tenant !== null && body.tenant !== header.tenant) throw new Failure(`event ${seq} belongs to another tenant than the export's`, seq);
  try {
    return leafHash(Buffer.from(canonicalJson(event), 'utf8'));
  } catch {
    throw new Failure(`event ${seq} has no canonical JSON form`, seq);
  }
}

function decodeLeafHash(encoded: unknown, seq: number): Buffer {
  const hash = canonicalHash(encoded);
  if (!hash) throw new Failure(`leaf ${seq} has no 32-byte base64 leaf_hash`, seq);
  return hash;
}

async function checkpointPayload(jws: unknown, jwks: { keys: unknown[] }, origin: string): Promise<CheckpointPayload> {
  let payload: Partial<Record<keyof CheckpointPayload, unknown>> | null;
  try {
    payload = JSON.parse((await verifyCheckpointJws(String(jws), jwks)).payload.toString('utf8')) as typeof payload;
  } catch {
    throw new Failure('a checkpoint signature does not verify against the JWKS: it is forged or from another vault');
  }
  if (typeof payload !== 'object' || payload === null) throw new Failure('a signed checkpoint is not an object');
  const { tree_size: size, root_hash: root } = payload;
  if (payload.origin !== origin) throw new Failure(`a checkpoint names origin ${String(payload.origin)}, not ${origin}`);
  if (!isSize(size) || size === 0) throw new Failure('a signed checkpoint has no valid tree size');
  if (!canonicalHash(root)) {
    throw new Failure(`the checkpoint at tree size ${size} has no valid root hash`);
  }
  return payload as CheckpointPayload;
}

function parse(raw: string, lineNo: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Failure(`line ${lineNo}: not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Failure(`line ${lineNo}: not a JSON object`);
  return value as Record<string, unknown>;
}

function isNullOrString(v: unknown): v is string | null {
  return v === null || typeof v === 'string';
}
