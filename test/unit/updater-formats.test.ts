// The VAU- and ABU-style batch formats: inquiry writing, response parsing, and how bad files are reported.
import { abu } from '../../src/updater/formats/abu';
import { vau } from '../../src/updater/formats/vau';
import type { BatchFormat, Inquiry, ParseReport } from '../../src/updater/formats/types';
import { isVaultError } from '../../src/errors';
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
  codes: Record<string, string>;
  newAccount: string;
  newExpiry: string;
  closed: string;
  noChange: string;
  /** Reads (ref, pan) back out of a written inquiry detail line, as the network would. */
  inquiryDetail(line: string): { ref: string; pan: string };
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
  newAccount: 'A',
  newExpiry: 'E',
  closed: 'C',
  noChange: 'V',
  inquiryDetail: (line) => ({ ref: line.split('|')[1]!, pan: line.split('|')[3]! }),
};

const ABU: Layout = {
  format: abu,
  header: (batchId) => `1${batchId.padEnd(20)}20260306ABU1`.padEnd(80),
  detail: (ref, code, newPan = '', e) => `2${ref.padEnd(32)}${code.padEnd(7)}${newPan.padEnd(19)}${e ? yymm(e) : ''}`.padEnd(80),
  trailer: (count) => `9${String(count).padStart(9, '0')}`.padEnd(80),
  misshapen: (ref) => `${`2${ref.padEnd(32)}VALID`.padEnd(80)}X`,
  codes: { UPDATE: 'new_account', EXPIRY: 'new_expiry', CONTAC: 'contact_cardholder', CONTACH: 'closed', NOMATH: 'no_match', VALID: 'no_change', UNKNWN: 'unknown' },
  newAccount: 'UPDATE',
  newExpiry: 'EXPIRY',
  closed: 'CONTACH',
  noChange: 'VALID',
  inquiryDetail: (line) => ({ ref: line.slice(1, 33).trim(), pan: line.slice(48, 67).trim() }),
};

const file = (...lines: string[]): string => `${lines.join('\n')}\n`;
const linesOf = (text: string): string[] => text.split('\n').slice(0, -1);
const NEW_EXPIRY = { month: 9, year: 2030 };

function expectNoCardData(report: ParseReport): void {
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

describe('vau format specifics', () => {
  it('accepts a new account number without a new expiry', () => {
    const report = vau.parseResponse(file(VAU.header('B1'), VAU.detail('c_1', 'A', FRESH), VAU.trailer(1)));
    expect(report).toEqual({ batchId: 'B1', errors: [], responses: [{ ref: 'c_1', outcome: 'new_account', networkCode: 'A', newPan: FRESH }] });
  });
});

describe('abu format specifics', () => {
  it('requires a new expiry with UPDATE', () => {
    const report = abu.parseResponse(file(ABU.header('B1'), ABU.detail('c_1', 'UPDATE', FRESH), ABU.trailer(1)));
    expect(report.errors.map(({ line, code }) => [line, code])).toEqual([[2, 'invalid_expiry']]);
  });

  it('reads a record whose trailing blanks were stripped in transit', () => {
    const report = abu.parseResponse(file(ABU.header('B1').trimEnd(), ABU.detail('c_1', 'VALID').trimEnd(), ABU.trailer(1).trimEnd()));
    expect(report.errors).toEqual([]);
    expect(report.responses).toEqual([{ ref: 'c_1', outcome: 'no_change', networkCode: 'VALID' }]);
  });
});
