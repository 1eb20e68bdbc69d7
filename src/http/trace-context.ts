// W3C Trace Context: strict parsing of a caller's traceparent and tracestate, and ids for the spans the vault starts.
import { randomHexId } from '../crypto/random';
import { mayHoldCardNumber, mayHoldCardNumberAcrossPunctuation } from '../domain/pan';

export interface TraceContext {
  /** 32 lowercase hex digits: the caller's trace, continued, or a new one. */
  traceId: string;
  /** 16 lowercase hex digits: this vault's span, new for every request and every outbound call. */
  spanId: string;
  /** The caller's span, when the trace was continued. */
  parentId: string | undefined;
  /** `01` sampled, `00` not; the other flag bits are not passed on. */
  flags: '00' | '01';
  /** The caller's tracestate when it was well formed; never logged, never echoed. */
  traceState: string | undefined;
}

/** Version 00 only, lowercase, exact length: a later version, a padded or a merged (repeated) header is refused. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ALL_ZERO = /^0+$/;

const TRACESTATE_MAX_MEMBERS = 32;
const TRACESTATE_MAX_LENGTH = 512;
const TRACESTATE_KEY = /^(?:[a-z][a-z0-9_*\/-]{0,255}|[a-z0-9][a-z0-9_*\/-]{0,240}@[a-z][a-z0-9_*\/-]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** Ids are logged: one that could hold a card number (domain/pan.ts, mayHoldCardNumber) is refused. */
const usableId = (id: string) => !ALL_ZERO.test(id) && !mayHoldCardNumber(id);

/** Random hex of `bytes` bytes that passes the same checks as a caller's id. */
function newId(bytes: number): string {
  for (;;) {
    const id = randomHexId(bytes);
    if (usableId(id)) return id;
  }
}

/** The caller's trace with a new span of ours; a fresh trace when traceparent is absent or not exactly valid. */
export function continueTrace(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  if (!match || !usableId(match[1]!) || !usableId(match[2]!)) return startTrace();
  return {
    traceId: match[1]!,
    spanId: newId(8),
    parentId: match[2]!,
    flags: (parseInt(match[3]!, 16) & 1) === 1 ? '01' : '00',
    // A malformed tracestate is dropped on its own; the traceparent still stands (W3C Trace Context §3.3).
    traceState: validTraceState(tracestate),
  };
}

/** A new trace, sampled: the request log line records its span. */
export function startTrace(): TraceContext {
  return { traceId: newId(16), spanId: newId(8), parentId: undefined, flags: '01', traceState: undefined };
}

/** The header value naming this context's span, built from parsed parts only: never a caller's raw header. */
export function formatTraceparent(context: Pick<TraceContext, 'traceId' | 'spanId' | 'flags'>): string {
  return `00-${context.traceId}-${context.spanId}-${context.flags}`;
}

function validTraceState(header: string | undefined): string | undefined {
  if (header === undefined || header.length > TRACESTATE_MAX_LENGTH) return undefined;
  // Repeated headers arrive joined by commas, which is exactly how members are listed; empty members are allowed.
  const members = header
    .split(',')
    .map((member) => member.replace(/^[ \t]+|[ \t]+$/g, ''))
    .filter((member) => member !== '');
  if (members.length === 0 || members.length > TRACESTATE_MAX_MEMBERS) return undefined;
  const keys = new Set<string>();
  for (const member of members) {
    const equals = member.indexOf('=');
    const key = member.slice(0, equals);
    if (equals < 0 || !TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(member.slice(equals + 1)) || keys.has(key)) return undefined;
    keys.add(key);
  }
  // Kept for calls made on the caller's behalf; one that could hold a card number is not worth the risk.
  const state = members.join(',');
  return mayHoldCardNumberAcrossPunctuation(state) ? undefined : state;
}
