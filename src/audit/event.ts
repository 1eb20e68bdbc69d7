// What an audit event says, and how it becomes the exact bytes that are hashed into the Merkle tree.
import type { AuditInput } from '../domain/ports';
import { canonicalJson } from './canonical-json';

export const AUDIT_EVENT_VERSION = 1;

/** The leaf as hashed: RFC 8785 JSON of this object. `prev` chains each event to its predecessor's leaf hash. */
export interface AuditEvent {
  v: number;
  seq: number;
  prev: string | null;
  time: string;
  tenant: string | null;
  principal: string;
  action: string;
  outcome: string;
  source: string | null;
  request_id: string | null;
  token: string | null;
  details: Record<string, unknown>;
}

export function toAuditEvent(input: AuditInput, time: Date, seq: number, prev: Buffer | null): AuditEvent {
  return {
    v: AUDIT_EVENT_VERSION,
    seq,
    prev: prev ? prev.toString('base64') : null,
    time: time.toISOString(),
    tenant: input.tenantId,
    principal: input.principal,
    action: input.action,
    outcome: input.outcome,
    source: input.source ?? null,
    request_id: input.requestId ?? null,
    token: input.token ?? null,
    details: input.details ?? {},
  };
}

export function eventBytes(event: AuditEvent): Buffer {
  return Buffer.from(canonicalJson(event), 'utf8');
}

/**
 * The event's RFC 8785 text in three pieces around the values of `prev` and `seq`, which only the locked head
 * decides: piece 1, prev's JSON, piece 2, seq, piece 3 make eventBytes' text. PostgreSQL joins them in the
 * one-statement append (migrations/0016_audit_append_function.sql).
 */
export function eventPieces(input: AuditInput, time: Date): [string, string, string] {
  const event = toAuditEvent(input, time, 0, null) as unknown as Record<string, unknown>;
  const pieces: string[] = [];
  let text = '{';
  // RFC 8785 orders members by the UTF-16 code units of their names, as Array.prototype.sort does.
  for (const [i, name] of Object.keys(event).sort().entries()) {
    text += `${i === 0 ? '' : ','}${JSON.stringify(name)}:`;
    if (name === 'prev' || name === 'seq') {
      pieces.push(text);
      text = '';
    } else {
      text += canonicalJson(event[name]);
    }
  }
  pieces.push(`${text}}`);
  return pieces as [string, string, string];
}
