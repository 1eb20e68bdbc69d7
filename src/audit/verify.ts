// Checks an export offline: checkpoint signatures, sequence continuity, the hash chain, and every checkpoint's
// root recomputed from the leaves. Reports the first bad event by sequence number.
import { verifyCheckpointJws } from '../crypto/checkpoint-signer';
import { canonicalJson } from './canonical-json';
import type { CheckpointPayload } from './checkpointer';
import { EXPORT_FORMAT, EXPORT_VERSION } from './export';
import { leafHash, MerkleFrontier } from './merkle';

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

async function check(lines: AsyncIterable<string> | Iterable<string>, jwks: { keys: unknown[] }, report: VerifyReport): Promise<void> {
  let origin: string | undefined;
  const roots = new Map<number, string>();
  let frontier: MerkleFrontier | undefined;
  let previous: { seq: number; hash: Buffer } | undefined;
  let ended = false;
  let lineNo = 0;

  for await (const raw of lines) {
    lineNo += 1;
    if (raw.trim() === '') continue;
    if (ended) throw new Failure(`line ${lineNo}: data after the end line`);
    const record = parse(raw, lineNo);
    switch (record.type) {
      case 'header':
        if (record.format !== EXPORT_FORMAT || record.version !== EXPORT_VERSION) throw new Failure('not a cardvault audit export (v1)');
        origin = String(record.origin);
        break;
      case 'checkpoint': {
        const payload = await checkpointPayload(String(record.jws), jwks, origin);
        roots.set(payload.tree_size, payload.root_hash);
        report.checkpoints += 1;
        break;
      }
      case 'start': {
        frontier = MerkleFrontier.fromJSON(record.frontier);
        const size = Number(record.tree_size);
        if (frontier.size !== size) throw new Failure('the starting range does not match its tree size');
        if (size > 0 && roots.get(size) !== frontier.root().toString('base64')) {
          throw new Failure(`the starting range at tree size ${size} does not match a signed checkpoint`);
        }
        break;
      }
      case 'event':
      case 'leaf': {
        if (!frontier) throw new Failure(`line ${lineNo}: a leaf before the start line`);
        const seq = Number(record.seq);
        if (seq !== frontier.size) throw new Failure(`event ${frontier.size} is missing or out of order (found ${seq})`, frontier.size);
        const hash = record.type === 'event' ? eventLeaf(record.event, seq, previous) : Buffer.from(String(record.leaf_hash), 'base64');
        frontier.append(hash);
        previous = { seq, hash };
        if (record.type === 'event') report.events += 1;
        else report.leaves += 1;
        const expected = roots.get(frontier.size);
        if (expected !== undefined && expected !== frontier.root().toString('base64')) {
          throw new Failure(`the root at tree size ${frontier.size} does not match its signed checkpoint: event ${seq} or an earlier one was altered`, seq);
        }
        break;
      }
      case 'end': {
        const size = Number(record.tree_size);
        if (!frontier || frontier.size !== size) throw new Failure(`the export ends at ${frontier?.size ?? 0} leaves, not ${size}: it is truncated`, frontier?.size ?? 0);
        if (!roots.has(size) && size > 0) throw new Failure(`no signed checkpoint covers tree size ${size}`);
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

/** Recomputes an event's leaf hash from its canonical bytes and checks its place in the chain. */
function eventLeaf(event: unknown, seq: number, previous: { seq: number; hash: Buffer } | undefined): Buffer {
  const body = event as { seq?: unknown; prev?: unknown };
  if (body?.seq !== seq) throw new Failure(`event ${seq} carries sequence number ${String(body?.seq)}: rows were reordered`, seq);
  if (previous && body.prev !== previous.hash.toString('base64')) {
    throw new Failure(`event ${previous.seq} does not match the hash that event ${seq} recorded for it: it was altered`, previous.seq);
  }
  return leafHash(Buffer.from(canonicalJson(event), 'utf8'));
}

async function checkpointPayload(jws: string, jwks: { keys: unknown[] }, origin: string | undefined): Promise<CheckpointPayload> {
  let payload: CheckpointPayload;
  try {
    payload = JSON.parse((await verifyCheckpointJws(jws, jwks)).payload.toString('utf8')) as CheckpointPayload;
  } catch {
    throw new Failure('a checkpoint signature does not verify against the JWKS: it is forged or from another vault');
  }
  if (payload.origin !== origin) throw new Failure(`a checkpoint names origin ${payload.origin}, not ${origin}`);
  return payload;
}

function parse(raw: string, lineNo: number): Record<string, unknown> {
  try {
    return JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new Failure(`line ${lineNo}: not JSON`);
  }
}
