// The one-statement append rebuilds each event's text from three pieces around `prev` and `seq`: joined with any
// values, they must be exactly the canonical bytes the TypeScript append hashes.
import { canonicalJson } from '../../src/audit/canonical-json';
import { eventPieces, toAuditEvent } from '../../src/audit/event';
import type { AuditInput } from '../../src/domain/ports';

const joined = (pieces: readonly string[], prev: Buffer | null, seq: number) =>
  `${pieces[0]}${prev ? JSON.stringify(prev.toString('base64')) : 'null'}${pieces[1]}${seq}${pieces[2]}`;

const inputs: AuditInput[] = [
  { tenantId: null, principal: 'system', action: 'service.start', outcome: 'success' },
  {
    tenantId: '11111111-1111-4111-8111-111111111111',
    principal: 'key-1',
    action: 'card.detokenize',
    outcome: 'success',
    source: '203.0.113.9',
    requestId: 'req-1',
    token: '4111110000001111',
    details: { purpose: 'authorization', reveal: ['number', 'expiry'], nested: { b: 1, a: [true, null, 2.5] } },
  },
  {
    // Details that spell the very member names the pieces are cut at, quotes, escapes and non-ASCII text.
    tenantId: null,
    principal: 'cli',
    action: 'tenant.create',
    outcome: 'failure',
    details: { name: '"prev":"x","seq":1', note: 'line\nbreak \u00e9 \u{1F4B3} \\ "q"', prev: 'not the chain', seq: -1 },
  },
];

describe('eventPieces', () => {
  const time = new Date('2026-11-21T23:59:58.123Z');
  const prev = Buffer.alloc(32, 0xab);

  it.each(inputs.map((input, i) => [i, input] as const))('joins to the canonical text of event %i for any prev and seq', (_, input) => {
    const pieces = eventPieces(input, time);
    expect(pieces).toHaveLength(3);
    for (const [p, seq] of [
      [null, 0],
      [prev, 1],
      [prev, 9_007_199_254_740_991],
    ] as const) {
      expect(joined(pieces, p, seq)).toBe(canonicalJson(toAuditEvent(input, time, seq, p)));
    }
  });

  it('cuts at the event\'s own members, not at look-alikes in its details', () => {
    const pieces = eventPieces(inputs[2]!, time);
    expect(pieces[0].endsWith(',"outcome":"failure","prev":')).toBe(true);
    expect(pieces[1]).toBe(',"principal":"cli","request_id":null,"seq":');
    expect(pieces[2].startsWith(',"source":null,"tenant":null,"time":"2026-11-21T23:59:58.123Z"')).toBe(true);
  });
});
