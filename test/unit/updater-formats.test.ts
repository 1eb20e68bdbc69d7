// The VAU- and ABU-style batch formats: inquiry writing, response parsing, and how bad files are reported.
import { abu } from '../../src/updater/formats/abu';
import { vau } from '../../src/updater/formats/vau';
import type { BatchFormat, Inquiry, NetworkResponse, ParseError, UpdateOutcome } from '../../src/updater/formats/types';
import { isVaultError } from '../../src/errors';
import { OUTCOMES } from '../../src/updater/network/contract';
import { SIMULATOR_CODES } from '../../src/updater/network/simulator';
import { newPan } from '../support/pans';
import { generateTestPan } from '../support/test-cards';

const VISA = '4111111111111111';
const MASTERCARD = '5555555555554444';
const VISA_DEBIT = '4000056655665556';
const AMEX = '378282246310005';
const FRESH = generateTestPan('411111', 16);
const ALL_PANS = [VISA, MASTERCARD, VISA_DEBIT, AMEX, FRESH];
/** The same numbers with the check digit broken, so they fail Luhn and take the error paths. */
const BROKEN_PANS = ALL_PANS.map((pan) => pan.slice(0, -1) + String((Number(pan.at(-1)) + 1) % 10));

const CREATED = new Date('2026-03-05T10:00:00Z');

function inquiry(ref: string, pan: string, expMonth = 4, expYear = 2027): Inquiry {
  return { ref, pan, expMonth, expYear, merchantId: 'm_acme' };
}

/** What a test needs to write a response file by hand in each layout. */
interface Layout {
  format: BatchFormat;
  header(batchId: string): string;
  detail(ref: string, code: string, newPan?: string, newExpiry?: { month: number; year: number }): string;
  trailer(count: number): string;
  /** A detail record of the wrong shape: a sixth field in VAU, an 81-column record in ABU. */
  misshapen(ref: string): string;
  codes: Record<string, UpdateOutcome>;
  /** Outcomes the format has no code for: the code written instead and the outcome it reads back as. */
  closest: Partial<Record<UpdateOutcome, [string, UpdateOutcome]>>;
  newAccount: string;
  newExpiry: string;
  closed: string;
  noChange: string;
  /** Reads (ref, pan) back out of a written inquiry detail line, as the network would. */
  inquiryDetail(line: string): { ref: string; pan: string };
  /** Writes an inquiry detail record by hand, so a test can put anything in any field. */
  inquiryLine(ref: string, merchantId: string, pan: string, expiry: { month: number; year: number }): string;
}

const mmyy = (e: { month: number; year: number }): string => `${String(e.month).padStart(2, '0')}${String(e.year % 100).padStart(2, '0')}`;
const yymm = (e: { month: number; year: number }): string => `${String(e.year % 100).padStart(2, '0')}${String(e.month).padStart(2, '0')}`;

const VAU: Layout = {
  format: vau,
  header: (batchId) => `H|${batchId}|20260306|VAU1`,
  detail: (ref, code, newPan = '', e) => `D|${ref}|${code}|${newPan}|${e ? mmyy(e) : ''}`,
  trailer: (count) => `T|${count}`,
  misshapen: (ref) => `D|${ref}|V|||extra`,
  codes: { A: 'new_account', E: 'new_expiry', C: 'closed', Q: 'contact_cardholder', V: 'no_change', P: 'no_match', N: 'non_participating', O: 'opted_out' },
  closest: { unknown: ['P', 'no_match'] },
  newAccount: 'A',
  newExpiry: 'E',
  closed: 'C',
  noChange: 'V',
  inquiryDetail: (line) => ({ ref: line.split('|')[1]!, pan: line.split('|')[3]! }),
  inquiryLine: (ref, merchantId, pan, e) => `D|${ref}|${merchantId}|${pan}|${mmyy(e)}`,
};

const ABU: Layout = {
  format: abu,
  header: (batchId) => `1${batchId.padEnd(20)}20260306ABU1`.padEnd(80),
  detail: (ref, code, newPan = '', e) => `2${ref.padEnd(32)}${code.padEnd(7)}${newPan.padEnd(19)}${e ? yymm(e) : ''}`.padEnd(80),
  trailer: (count) => `9${String(count).padStart(9, '0')}`.padEnd(80),
  misshapen: (ref) => `${`2${ref.padEnd(32)}VALID`.padEnd(80)}X`,
  codes: { UPDATE: 'new_account', EXPIRY: 'new_expiry', CONTAC: 'contact_cardholder', CONTACH: 'closed', NOMATH: 'no_match', VALID: 'no_change', UNKNWN: 'unknown' },
  closest: { non_participating: ['UNKNWN', 'unknown'], opted_out: ['UNKNWN', 'unknown'] },
  newAccount: 'UPDATE',
  newExpiry: 'EXPIRY',
  closed: 'CONTACH',
  noChange: 'VALID',
  inquiryDetail: (line) => ({ ref: line.slice(1, 33).trim(), pan: line.slice(48, 67).trim() }),
  inquiryLine: (ref, merchantId, pan, e) => `2${ref.padEnd(32)}${merchantId.padEnd(15)}${pan.padEnd(19)}${yymm(e)}`.padEnd(80),
};

const file = (...lines: string[]): string => `${lines.join('\n')}\n`;
const linesOf = (text: string): string[] => text.split('\n').slice(0, -1);
const NEW_EXPIRY = { month: 9, year: 2030 };

function expectNoCardData(report: { errors: ParseError[] }): void {
  const printed = JSON.stringify(report.errors);
  for (const pan of [...ALL_PANS, ...BROKEN_PANS]) expect(printed).not.toContain(pan);
  expect(printed).not.toMatch(/[0-9]{12,}/);
}

describe.each([
  ['vau', VAU],
  ['abu', ABU],
] as const)('%s format', (_name, layout) => {
  const { format } = layout;

  it('round-trips: the inquiry file is read by a simulated network and its response parses back to every card', () => {
    const inquiries = [inquiry('c_1', VISA), inquiry('c_2', MASTERCARD), inquiry('c_3', AMEX, 12, 2029)];
    const written = format.writeInquiry('B20260305', inquiries, CREATED);
    const lines = linesOf(written);
    expect(lines).toHaveLength(5);
    const asked = lines.slice(1, -1).map(layout.inquiryDetail);
    expect(asked).toEqual(inquiries.map(({ ref, pan }) => ({ ref, pan })));

    const response = file(
      layout.header('B20260305'),
      layout.detail(asked[0]!.ref, layout.newAccount, VISA_DEBIT, NEW_EXPIRY),
      layout.detail(asked[1]!.ref, layout.newExpiry, undefined, NEW_EXPIRY),
      layout.detail(asked[2]!.ref, layout.closed),
      layout.trailer(3),
    );
    expect(format.parseResponse(response)).toEqual({
      batchId: 'B20260305',
      errors: [],
      responses: [
        { ref: 'c_1', outcome: 'new_account', networkCode: layout.newAccount, newPan: VISA_DEBIT, newExpMonth: 9, newExpYear: 2030 },
        { ref: 'c_2', outcome: 'new_expiry', networkCode: layout.newExpiry, newExpMonth: 9, newExpYear: 2030 },
        { ref: 'c_3', outcome: 'closed', networkCode: layout.closed },
      ],
    });
  });

  it('writes a header stamped with the creation date and a trailer counting the details', () => {
    const lines = linesOf(format.writeInquiry('B1', [inquiry('c_1', FRESH)], CREATED));
    expect(lines[0]).toContain('20260305');
    expect(lines[2]).toMatch(/^(T\|1|9000000001 *)$/);
    if (format.name === 'abu') for (const line of lines) expect(line).toHaveLength(80);
  });

  it.each([
    ['a reference with a delimiter', inquiry('c|1', VISA), 'invalid_field'],
    ['an all-digit reference', inquiry('4111111111111111', VISA), 'invalid_field'],
    ['a card number that fails Luhn', inquiry('c_1', BROKEN_PANS[0]!), 'invalid_card_number'],
    ['a month of 13', inquiry('c_1', VISA, 13), 'invalid_expiry'],
  ])('refuses to write %s, naming the inquiry and no card number', (_case, bad, code) => {
    const attempt = (): string => format.writeInquiry('B1', [inquiry('c_0', MASTERCARD), bad], CREATED);
    expect(attempt).toThrow(expect.objectContaining({ code }));
    try {
      attempt();
    } catch (err) {
      expect(isVaultError(err)).toBe(true);
      expect((err as Error).message).toContain('inquiry 2');
      expect((err as Error).message).not.toMatch(/[0-9]{12,}/);
    }
  });

  it('maps every response code to its outcome', () => {
    const codes = Object.keys(layout.codes);
    const details = codes.map((code, i) =>
      code === layout.newAccount
        ? layout.detail(`c_${i}`, code, MASTERCARD, NEW_EXPIRY)
        : code === layout.newExpiry
          ? layout.detail(`c_${i}`, code, undefined, NEW_EXPIRY)
          : layout.detail(`c_${i}`, code),
    );
    const report = format.parseResponse(file(layout.header('B1'), ...details, layout.trailer(codes.length)));
    expect(report.errors).toEqual([]);
    expect(report.responses.map((r) => [r.networkCode, r.outcome])).toEqual(Object.entries(layout.codes));
  });

  it('reports each malformed record with its line number and still returns the good ones', () => {
    const report = format.parseResponse(
      file(
        layout.header('B1'),
        layout.detail('c_1', layout.noChange),
        layout.detail('c_2', 'ZZZ'),
        layout.detail('c_3', layout.newAccount, BROKEN_PANS[1], NEW_EXPIRY),
        layout.detail('c_4', layout.newExpiry, undefined, { month: 13, year: 2030 }),
        layout.misshapen('c_5'),
        `X${VISA}`,
        layout.detail('c_6', layout.closed),
        layout.detail('c_6', layout.closed),
        layout.detail('c_7', layout.closed, AMEX),
        layout.trailer(8),
      ),
    );
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([
      [3, 'unknown_response_code'],
      [4, 'invalid_card_number'],
      [5, 'invalid_expiry'],
      [6, 'malformed_record'],
      [7, 'unknown_record_type'],
      [9, 'duplicate_reference'],
      [10, 'unexpected_field'],
    ]);
    expect(report.errors.find((e) => e.line === 4)?.message).toBe('field 4 is not a valid card number');
    expect(report.responses.map((r) => r.ref)).toEqual(['c_1', 'c_6']);
    expectNoCardData(report);
  });

  it('applies neither of two records that answer one reference differently', () => {
    const report = format.parseResponse(
      file(
        layout.header('B1'),
        layout.detail('c_1', layout.closed),
        layout.detail('c_2', layout.noChange),
        layout.detail('c_1', layout.newAccount, MASTERCARD, NEW_EXPIRY),
        layout.trailer(3),
      ),
    );
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[4, 'duplicate_reference']]);
    // Closing the card or giving it a new number: either would be a guess, so the card goes unanswered.
    expect(report.responses.map((r) => r.ref)).toEqual(['c_2']);
    expectNoCardData(report);
  });

  it('reports a missing trailer for the whole file and keeps the details it read', () => {
    const report = format.parseResponse(file(layout.header('B1'), layout.detail('c_1', layout.closed)));
    expect(report.errors).toEqual([{ line: 0, code: 'missing_trailer', message: expect.any(String) }]);
    expect(report.responses).toHaveLength(1);
  });

  it('reports a trailer count that differs from the detail records, counting rejected ones too', () => {
    const report = format.parseResponse(
      file(layout.header('B1'), layout.detail('c_1', layout.closed), layout.detail('c_2', 'ZZZ'), layout.trailer(3)),
    );
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([
      [3, 'unknown_response_code'],
      [4, 'count_mismatch'],
    ]);
    expect(report.errors[1]!.message).toBe('the trailer counts 3 detail records but the file has 2');
    expect(report.responses).toHaveLength(1);
  });

  it('returns no responses when the header is missing, since nothing says which batch the file answers', () => {
    const report = format.parseResponse(file(layout.detail('c_1', layout.closed), layout.trailer(1)));
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[1, 'missing_header']]);
    expect(report.responses).toEqual([]);
    expect(report.batchId).toBeUndefined();
  });

  it('returns no responses when the header is unusable', () => {
    const header = layout.header('B1').replace(/VAU1|ABU1/, 'XXX9');
    const report = format.parseResponse(file(header, layout.detail('c_1', layout.closed), layout.trailer(1)));
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[1, 'invalid_header']]);
    expect(report.responses).toEqual([]);
  });

  it('reports records after the trailer, a second header and blank lines; accepts CRLF line ends', () => {
    const text = [
      layout.header('B1'),
      layout.detail('c_1', layout.closed),
      '',
      layout.header('B2'),
      layout.trailer(1),
      layout.detail('c_2', layout.closed),
    ].join('\r\n');
    const report = format.parseResponse(text);
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([
      [3, 'blank_line'],
      [4, 'misplaced_header'],
      [6, 'record_after_trailer'],
    ]);
    expect(report.responses.map((r) => r.ref)).toEqual(['c_1']);
  });

  it('reports an empty file', () => {
    expect(format.parseResponse('\n')).toEqual({ responses: [], errors: [{ line: 0, code: 'empty_file', message: 'the file has no records' }] });
  });

  it('never puts a card number from the file into an error message, wherever it appears', () => {
    const lines = [layout.header('B1')];
    for (const pan of [...ALL_PANS, ...BROKEN_PANS]) {
      lines.push(pan, layout.detail(pan, layout.closed), layout.detail('c_x', pan), layout.detail('c_y', layout.newAccount, pan));
      lines.push(layout.detail('c_z', layout.closed, pan), layout.detail('c_w', layout.newExpiry, pan, NEW_EXPIRY));
    }
    lines.push(layout.trailer(ALL_PANS.length));
    const report = format.parseResponse(file(...lines));
    expect(report.errors.length).toBeGreaterThan(40);
    expectNoCardData(report);
  });
});

/** A response carrying the fields its outcome needs, so any outcome can be written. */
function answer(ref: string, outcome: UpdateOutcome, networkCode: string): NetworkResponse {
  if (outcome === 'new_account') return { ref, outcome, networkCode, newPan: newPan('555555'), newExpMonth: 1, newExpYear: 2099 };
  if (outcome === 'new_expiry') return { ref, outcome, networkCode, newExpMonth: 12, newExpYear: 2000 };
  return { ref, outcome, networkCode };
}

describe.each([
  ['vau', VAU],
  ['abu', ABU],
] as const)('%s format, network side', (_name, layout) => {
  const { format } = layout;
  const EXPIRY = { month: 4, year: 2027 };

  it('round-trips inquiries: parseInquiry reads back every card writeInquiry wrote', () => {
    const cards = [
      inquiry('c_1', newPan('411111', 16)),
      inquiry('c_2', newPan('555555', 16), 1, 2000),
      inquiry('c_3', newPan('222300', 16), 12, 2099),
      { ...inquiry('card-4', newPan('411111', 12)), merchantId: 'merchant-15-chr' },
      { ...inquiry('R'.repeat(32), newPan('411111', 19)), merchantId: 'M' },
    ];
    expect(format.parseInquiry(format.writeInquiry('B20260305', cards, CREATED))).toEqual({ batchId: 'B20260305', inquiries: cards, errors: [] });
    expect(format.parseInquiry(format.writeInquiry('B1', [], CREATED))).toEqual({ batchId: 'B1', inquiries: [], errors: [] });
  });

  it('reports each malformed inquiry record by line and code, keeps the good ones, and shows no card number', () => {
    const good = newPan('411111');
    const other = newPan('222300');
    const broken = good.slice(0, -1) + String((Number(good.at(-1)) + 1) % 10);
    const report = format.parseInquiry(
      file(
        layout.header('B1'),
        layout.inquiryLine('c_1', 'm_acme', good, EXPIRY),
        layout.inquiryLine(other, 'm_acme', other, EXPIRY),
        layout.inquiryLine('c_3', 'm acme!', other, EXPIRY),
        layout.inquiryLine('c_4', 'm_acme', broken, EXPIRY),
        layout.inquiryLine('c_5', 'm_acme', other, { month: 13, year: 2027 }),
        layout.misshapen('c_6'),
        `X${other}`,
        layout.inquiryLine('c_1', 'm_acme', other, EXPIRY),
        layout.inquiryLine('c_9', 'm_acme', other.slice(0, 11), EXPIRY),
        layout.trailer(10),
      ),
    );
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([
      [3, 'invalid_reference'],
      [4, 'invalid_merchant_id'],
      [5, 'invalid_card_number'],
      [6, 'invalid_expiry'],
      [7, 'malformed_record'],
      [8, 'unknown_record_type'],
      [9, 'duplicate_reference'],
      [10, 'invalid_card_number'],
      [11, 'count_mismatch'],
    ]);
    expect(report.errors.find((e) => e.line === 5)?.message).toBe('field 4 is not a valid card number');
    // c_1 twice, about two numbers: which one the network should answer about would be a guess.
    expect(report.inquiries).toEqual([]);
    expect(report.batchId).toBe('B1');
    const printed = JSON.stringify(report.errors);
    for (const pan of [good, other, broken]) expect(printed).not.toContain(pan);
    expectNoCardData(report);
  });

  it('returns no inquiries when the inquiry header is missing, and reports an empty file', () => {
    const report = format.parseInquiry(file(layout.inquiryLine('c_1', 'm_acme', newPan('555555'), EXPIRY), layout.trailer(1)));
    expect(report).toEqual({ inquiries: [], errors: [{ line: 1, code: 'missing_header', message: expect.any(String) }] });
    expect(format.parseInquiry('')).toEqual({ inquiries: [], errors: [{ line: 0, code: 'empty_file', message: 'the file has no records' }] });
  });

  it('never puts a card number from an inquiry file into an error message, wherever it appears', () => {
    const lines = [layout.header('B1')];
    for (const pan of [...ALL_PANS, ...BROKEN_PANS]) {
      lines.push(pan, layout.inquiryLine(pan, 'm_acme', VISA, EXPIRY), layout.inquiryLine('c_x', pan, VISA, EXPIRY));
      lines.push(layout.inquiryLine('c_y', 'm_acme', pan, { month: 13, year: 2027 }), layout.inquiryLine('c_z', 'm_acme', `${pan}0`, EXPIRY));
    }
    lines.push(layout.trailer(1));
    const report = format.parseInquiry(file(...lines));
    expect(report.errors.length).toBeGreaterThan(40);
    expectNoCardData(report);
  });

  it('round-trips every response code: parseResponse reads back what writeResponse wrote', () => {
    const responses = Object.entries(layout.codes).map(([code, outcome], i) => answer(`c_${i}`, outcome, code));
    const written = format.writeResponse('B20260305', responses, CREATED);
    expect(format.parseResponse(written)).toEqual({ batchId: 'B20260305', responses, errors: [] });
    const lines = linesOf(written);
    expect(lines[0]).toContain('20260305');
    if (format.name === 'abu') for (const line of lines) expect(line).toHaveLength(80);
    expect(format.parseResponse(format.writeResponse('B1', []))).toEqual({ batchId: 'B1', responses: [], errors: [] });
  });

  it('writes an outcome it has no code for as the closest code it documents', () => {
    const uncoded = OUTCOMES.filter((outcome) => !Object.values(layout.codes).includes(outcome));
    expect(Object.keys(layout.closest).sort()).toEqual(uncoded.sort());
    for (const outcome of uncoded) {
      const [code, readsAs] = layout.closest[outcome]!;
      const report = format.parseResponse(format.writeResponse('B1', [answer('c_1', outcome, 'U')]));
      expect(report).toEqual({ batchId: 'B1', errors: [], responses: [{ ref: 'c_1', outcome: readsAs, networkCode: code }] });
    }
  });

  it("lets the outcome pick the code, replacing the simulator's codes with the format's own", () => {
    const responses = OUTCOMES.map((outcome, i) => answer(`c_${i}`, outcome, SIMULATOR_CODES[outcome]));
    const report = format.parseResponse(format.writeResponse('B1', responses));
    expect(report.errors).toEqual([]);
    expect(report.responses.map(({ outcome }) => outcome)).toEqual(OUTCOMES.map((o) => layout.closest[o]?.[1] ?? o));
    for (const { networkCode, outcome } of report.responses) expect(layout.codes[networkCode]).toBe(outcome);
  });

  it.each<[string, Partial<NetworkResponse>, string]>([
    ['a reference with a delimiter', { ref: 'c|1' }, 'invalid_field'],
    ['an all-digit reference', { ref: '5555555555554444' }, 'invalid_field'],
    ['a second response for the same reference', { ref: 'c_0' }, 'invalid_field'],
    ['an outcome that is not an update outcome', { outcome: 'expired' as UpdateOutcome }, 'invalid_field'],
    ['a new account without a new card number', { outcome: 'new_account', newExpMonth: 1, newExpYear: 2030 }, 'invalid_field'],
    ['a new card number that fails Luhn', { outcome: 'new_account', newPan: BROKEN_PANS[1]!, newExpMonth: 1, newExpYear: 2030 }, 'invalid_card_number'],
    ['a new card number on a closed account', { outcome: 'closed', newPan: MASTERCARD }, 'invalid_field'],
    ['a new expiry without a date', { outcome: 'new_expiry' }, 'invalid_field'],
    ['a new expiry without its year', { outcome: 'new_expiry', newExpMonth: 4 }, 'invalid_expiry'],
    ['a new expiry in month 13', { outcome: 'new_expiry', newExpMonth: 13, newExpYear: 2030 }, 'invalid_expiry'],
    ['a new expiry in 2100', { outcome: 'new_expiry', newExpMonth: 1, newExpYear: 2100 }, 'invalid_expiry'],
    ['a new expiry with no change', { outcome: 'no_change', newExpMonth: 1, newExpYear: 2030 }, 'invalid_field'],
  ])('refuses to write a response with %s, naming the response and no card number', (_case, change, code) => {
    const bad: NetworkResponse = { ref: 'c_1', outcome: 'no_change', networkCode: 'X', ...change };
    const attempt = (): string => format.writeResponse('B1', [answer('c_0', 'no_change', 'X'), bad], CREATED);
    expect(attempt).toThrow(expect.objectContaining({ code }));
    try {
      attempt();
    } catch (err) {
      expect(isVaultError(err)).toBe(true);
      expect((err as Error).message).toContain('response 2');
      expect((err as Error).message).not.toMatch(/[0-9]{12,}/);
    }
  });

  it('refuses to write a response file under a batch id the header cannot carry', () => {
    expect(() => format.writeResponse('B/1', [])).toThrow(expect.objectContaining({ code: 'invalid_field' }));
  });

  it('reads a code named like an Object.prototype method as an unknown code', () => {
    const report = format.parseResponse(file(layout.header('B1'), layout.detail('c_1', 'valueOf'), layout.trailer(1)));
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[2, 'unknown_response_code']]);
  });
});

describe('vau format specifics', () => {
  it('accepts a new account number without a new expiry', () => {
    const report = vau.parseResponse(file(VAU.header('B1'), VAU.detail('c_1', 'A', FRESH), VAU.trailer(1)));
    expect(report).toEqual({ batchId: 'B1', errors: [], responses: [{ ref: 'c_1', outcome: 'new_account', networkCode: 'A', newPan: FRESH }] });
  });

  it('writes a new account number without a new expiry, and reads it back the same', () => {
    const responses: NetworkResponse[] = [{ ref: 'c_1', outcome: 'new_account', networkCode: 'A', newPan: newPan('411111') }];
    expect(vau.parseResponse(vau.writeResponse('B1', responses))).toEqual({ batchId: 'B1', errors: [], responses });
  });
});

describe('abu format specifics', () => {
  it('requires a new expiry with UPDATE', () => {
    const report = abu.parseResponse(file(ABU.header('B1'), ABU.detail('c_1', 'UPDATE', FRESH), ABU.trailer(1)));
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[2, 'invalid_expiry']]);
  });

  it('refuses to write UPDATE without a new expiry, since the layout requires one', () => {
    const reissued: NetworkResponse = { ref: 'c_1', outcome: 'new_account', networkCode: 'UPDATE', newPan: newPan('411111') };
    expect(() => abu.writeResponse('B1', [reissued])).toThrow(expect.objectContaining({ code: 'invalid_field' }));
  });

  it('reads a record whose trailing blanks were stripped in transit', () => {
    const report = abu.parseResponse(file(ABU.header('B1').trimEnd(), ABU.detail('c_1', 'VALID').trimEnd(), ABU.trailer(1).trimEnd()));
    expect(report.errors).toEqual([]);
    expect(report.responses).toEqual([{ ref: 'c_1', outcome: 'no_change', networkCode: 'VALID' }]);
  });
});
