// Our ABU-style batch format, both ends of the exchange: fixed-width 80-column records, version ABU1.
//
// This is cardvault's own documented layout in the style of a Mastercard Automatic Billing Updater exchange; it is
// not, and does not claim to be, the network's proprietary specification. One record per line (LF; CRLF accepted),
// every record 80 columns, text left-justified and space-padded, numbers zero-padded. Lines shorter than 80 are
// read as if space-padded (transfers strip trailing blanks); longer ones are rejected. Columns are 1-based.
//
// Inquiry file (we write it with writeInquiry; the network, or the simulator, reads it with parseInquiry):
//   1 header   col 1 '1' | 2-21 batch id (A-Z a-z 0-9 _ -) | 22-29 creation date YYYYMMDD (UTC) | 30-33 'ABU1'
//   2 detail   col 1 '2' | 2-33 our reference | 34-48 merchant id | 49-67 card number (12-19 digits) | 68-71 expiry YYMM
//   9 trailer  col 1 '9' | 2-10 number of detail records, zero-padded
// Response file (the network writes it with writeResponse; we read it with parseResponse):
//   1 header   as above, carrying the batch id of the inquiry file it answers
//   2 detail   col 1 '2' | 2-33 reference | 34-40 response code | 41-59 new card number | 60-63 new expiry YYMM
//   9 trailer  as above
// Unused columns are blank. Response codes: UPDATE new account (new card number and new expiry required),
// EXPIRY new expiry (expiry required, card number blank), CONTAC contact cardholder, CONTACH account closed,
// contact cardholder, NOMATH no match, VALID no change, UNKNWN the issuer does not know the account; the last five
// carry neither new field. In messages, field n is the nth field of the record as listed, the record type being 1.
// ABU has no code for the outcomes `non_participating` and `opted_out`: writeResponse writes both as UNKNWN, the
// code that claims least about the card, so they read back as unknown. A new_account response without a new
// expiry cannot be written at all (UPDATE requires one) and is refused.
import { checkBatchId, checkInquiry, fail, ok, readBatch, readBatchId, readCardNumber, readCount, readExpiry, readMerchantId, readRef, twoDigits, yyyymmdd } from './batch-file';
import type { Envelope, Read } from './batch-file';
import { codeResponses, readAnswer, type CodeTable, type ResponseCode } from './response-codes';
import type { BatchFormat, Inquiry, NetworkResponse } from './types';

const VERSION = 'ABU1';
const WIDTH = 80;

const NEITHER = { newPan: 'absent', newExpiry: 'absent' } as const;
const CODES: Readonly<Record<string, ResponseCode>> = {
  UPDATE: { outcome: 'new_account', newPan: 'required', newExpiry: 'required' },
  EXPIRY: { outcome: 'new_expiry', newPan: 'absent', newExpiry: 'required' },
  CONTAC: { outcome: 'contact_cardholder', ...NEITHER },
  CONTACH: { outcome: 'closed', ...NEITHER },
  NOMATH: { outcome: 'no_match', ...NEITHER },
  VALID: { outcome: 'no_change', ...NEITHER },
  UNKNWN: { outcome: 'unknown', ...NEITHER },
};

const TABLE: CodeTable = {
  name: 'ABU',
  expiryOrder: 'YYMM',
  codes: CODES,
  writes: {
    new_account: 'UPDATE',
    new_expiry: 'EXPIRY',
    closed: 'CONTACH',
    contact_cardholder: 'CONTAC',
    no_change: 'VALID',
    no_match: 'NOMATH',
    non_participating: 'UNKNWN', // no ABU code: the closest, see the header comment
    opted_out: 'UNKNWN', // likewise
    unknown: 'UNKNWN',
  },
};

/** Columns are 1-based and inclusive, as the description above reads. */
function column(line: string, from: number, to: number): string {
  return line.slice(from - 1, to).trimEnd();
}

/** Pads a short record and rejects a long one or one with text where the layout leaves blanks. */
function record(line: string, usedColumns: number): Read<string> {
  if (line.length > WIDTH) return fail('malformed_record', `the record is ${line.length} columns long, not ${WIDTH}`);
  const padded = line.padEnd(WIDTH, ' ');
  if (padded.slice(usedColumns).trim() !== '') return fail('malformed_record', `columns ${usedColumns + 1}-${WIDTH} must be blank`);
  return ok(padded);
}

const envelope: Envelope = {
  recordType(line) {
    if (line.startsWith('1')) return 'header';
    if (line.startsWith('2')) return 'detail';
    if (line.startsWith('9')) return 'trailer';
    return 'unknown';
  },
  readHeader(line) {
    const r = record(line, 33);
    if (!r.ok) return fail('invalid_header', r.message);
    if (!/^[0-9]{8}$/.test(column(r.value, 22, 29))) return fail('invalid_header', 'field 3 is not a date in YYYYMMDD form');
    if (column(r.value, 30, 33) !== VERSION) return fail('invalid_header', `field 4 is not the supported version ${VERSION}`);
    return readBatchId(column(r.value, 2, 21), 2);
  },
  readTrailer(line) {
    const r = record(line, 10);
    if (!r.ok) return fail('invalid_trailer', r.message);
    const count = column(r.value, 2, 10);
    return count.length === 9 ? readCount(count, 2) : fail('invalid_trailer', 'field 2 is not a nine-digit record count');
  },
  recordTypes: '1, 2 or 9',
};

function readResponse(line: string): Read<NetworkResponse> {
  const r = record(line, 63);
  if (!r.ok) return r;
  const ref = readRef(column(r.value, 2, 33), 2);
  if (!ref.ok) return ref;
  return readAnswer(TABLE, ref.value, column(r.value, 34, 40), column(r.value, 41, 59), column(r.value, 60, 63));
}

function readInquiry(line: string): Read<Inquiry> {
  const r = record(line, 71);
  if (!r.ok) return r;
  const ref = readRef(column(r.value, 2, 33), 2);
  if (!ref.ok) return ref;
  const merchantId = readMerchantId(column(r.value, 34, 48), 3);
  if (!merchantId.ok) return merchantId;
  const pan = readCardNumber(column(r.value, 49, 67), 4);
  if (!pan.ok) return pan;
  const expiry = readExpiry(column(r.value, 68, 71), 'YYMM', 5);
  if (!expiry.ok) return expiry;
  return ok({ ref: ref.value, pan: pan.value, expMonth: expiry.value.month, expYear: expiry.value.year, merchantId: merchantId.value });
}

const yymm = (month: number, year: number): string => `${twoDigits(year)}${twoDigits(month)}`;

/** Header, details, trailer: the same envelope in both directions, every record padded to the full width. */
function batchFile(batchId: string, createdAt: Date, details: string[]): string {
  const header = `1${batchId.padEnd(20)}${yyyymmdd(createdAt)}${VERSION}`;
  const trailer = `9${String(details.length).padStart(9, '0')}`;
  return `${[header, ...details, trailer].map((line) => line.padEnd(WIDTH)).join('\n')}\n`;
}

function writeInquiry(batchId: string, inquiries: readonly Inquiry[], createdAt: Date = new Date()): string {
  checkBatchId(batchId);
  inquiries.forEach(checkInquiry);
  const details = inquiries.map(
    ({ ref, merchantId, pan, expMonth, expYear }) => `2${ref.padEnd(32)}${merchantId.padEnd(15)}${pan.padEnd(19)}${yymm(expMonth, expYear)}`,
  );
  return batchFile(batchId, createdAt, details);
}

function writeResponse(batchId: string, responses: readonly NetworkResponse[], createdAt: Date = new Date()): string {
  const codes = codeResponses(TABLE, batchId, responses);
  const details = responses.map(({ ref, newPan, newExpMonth, newExpYear }, i) => {
    const expiry = newExpMonth === undefined || newExpYear === undefined ? '' : yymm(newExpMonth, newExpYear);
    return `2${ref.padEnd(32)}${codes[i]!.padEnd(7)}${(newPan ?? '').padEnd(19)}${expiry}`;
  });
  return batchFile(batchId, createdAt, details);
}

export const abu: BatchFormat = {
  name: 'abu',
  writeInquiry,
  parseResponse(text) {
    const { details: responses, ...rest } = readBatch(text, envelope, readResponse);
    return { ...rest, responses };
  },
  parseInquiry(text) {
    const { details: inquiries, ...rest } = readBatch(text, envelope, readInquiry);
    return { ...rest, inquiries };
  },
  writeResponse,
};
