// Our ABU-style batch format: writes inquiry files and reads response files, fixed-width 80-column records, version ABU1.
//
// This is cardvault's own documented layout in the style of a Mastercard Automatic Billing Updater exchange; it is
// not, and does not claim to be, the network's proprietary specification. One record per line (LF; CRLF accepted),
// every record 80 columns, text left-justified and space-padded, numbers zero-padded. Lines shorter than 80 are
// read as if space-padded (transfers strip trailing blanks); longer ones are rejected. Columns are 1-based.
//
// Inquiry file (we send):
//   1 header   col 1 '1' | 2-21 batch id (A-Z a-z 0-9 _ -) | 22-29 creation date YYYYMMDD (UTC) | 30-33 'ABU1'
//   2 detail   col 1 '2' | 2-33 our reference | 34-48 merchant id | 49-67 card number (12-19 digits) | 68-71 expiry YYMM
//   9 trailer  col 1 '9' | 2-10 number of detail records, zero-padded
// Response file (the network returns):
//   1 header   as above, carrying the batch id of the inquiry file it answers
//   2 detail   col 1 '2' | 2-33 reference | 34-40 response code | 41-59 new card number | 60-63 new expiry YYMM
//   9 trailer  as above
// Unused columns are blank. Response codes: UPDATE new account (new card number and new expiry required),
// EXPIRY new expiry (expiry required, card number blank), CONTAC contact cardholder, CONTACH account closed,
// contact cardholder, NOMATH no match, VALID no change, UNKNWN the issuer does not know the account; the last five
// carry neither new field. In messages, field n is the nth field of the record as listed, the record type being 1.
import { checkBatchId, checkInquiry, fail, ok, readBatch, readBatchId, readCount, readExpiry, readNewPan, readRef, requireEmpty, twoDigits, yyyymmdd } from './batch-file';
import type { Read, RecordReader } from './batch-file';
import type { BatchFormat, Inquiry, NetworkResponse, UpdateOutcome } from './types';

const VERSION = 'ABU1';
const WIDTH = 80;

const OUTCOMES: Readonly<Record<string, UpdateOutcome>> = {
  UPDATE: 'new_account',
  EXPIRY: 'new_expiry',
  CONTAC: 'contact_cardholder',
  CONTACH: 'closed',
  NOMATH: 'no_match',
  VALID: 'no_change',
  UNKNWN: 'unknown',
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

function readHeader(line: string): Read<string> {
  const r = record(line, 33);
  if (!r.ok) return fail('invalid_header', r.message);
  if (!/^[0-9]{8}$/.test(column(r.value, 22, 29))) return fail('invalid_header', 'field 3 is not a date in YYYYMMDD form');
  if (column(r.value, 30, 33) !== VERSION) return fail('invalid_header', `field 4 is not the supported version ${VERSION}`);
  return readBatchId(column(r.value, 2, 21), 2);
}

function readTrailer(line: string): Read<number> {
  const r = record(line, 10);
  if (!r.ok) return fail('invalid_trailer', r.message);
  const count = column(r.value, 2, 10);
  return count.length === 9 ? readCount(count, 2) : fail('invalid_trailer', 'field 2 is not a nine-digit record count');
}

function readDetail(line: string): Read<NetworkResponse> {
  const r = record(line, 63);
  if (!r.ok) return r;
  const ref = readRef(column(r.value, 2, 33), 2);
  if (!ref.ok) return ref;
  const code = column(r.value, 34, 40);
  const outcome = OUTCOMES[code];
  if (outcome === undefined) return fail('unknown_response_code', 'field 3 is not a known ABU response code');
  const newPan = column(r.value, 41, 59);
  const newExpiry = column(r.value, 60, 63);
  const base: NetworkResponse = { ref: ref.value, outcome, networkCode: code };

  if (code === 'UPDATE' || code === 'EXPIRY') {
    const pan = code === 'UPDATE' ? readNewPan(newPan, 4) : requireEmpty(newPan, 4, code);
    if (!pan.ok) return pan;
    const expiry = readExpiry(newExpiry, 'YYMM', 5);
    if (!expiry.ok) return expiry;
    const newAccount = pan.value === undefined ? {} : { newPan: pan.value };
    return ok({ ...base, ...newAccount, newExpMonth: expiry.value.month, newExpYear: expiry.value.year });
  }
  const panEmpty = requireEmpty(newPan, 4, code);
  if (!panEmpty.ok) return panEmpty;
  const expiryEmpty = requireEmpty(newExpiry, 5, code);
  return expiryEmpty.ok ? ok(base) : expiryEmpty;
}

const reader: RecordReader = {
  recordType(line) {
    if (line.startsWith('1')) return 'header';
    if (line.startsWith('2')) return 'detail';
    if (line.startsWith('9')) return 'trailer';
    return 'unknown';
  },
  readHeader,
  readDetail,
  readTrailer,
  recordTypes: '1, 2 or 9',
};

function writeInquiry(batchId: string, inquiries: readonly Inquiry[], createdAt: Date = new Date()): string {
  checkBatchId(batchId);
  inquiries.forEach(checkInquiry);
  const lines = [`1${batchId.padEnd(20)}${yyyymmdd(createdAt)}${VERSION}`.padEnd(WIDTH)];
  for (const { ref, merchantId, pan, expMonth, expYear } of inquiries) {
    const detail = `2${ref.padEnd(32)}${merchantId.padEnd(15)}${pan.padEnd(19)}${twoDigits(expYear)}${twoDigits(expMonth)}`;
    lines.push(detail.padEnd(WIDTH));
  }
  lines.push(`9${String(inquiries.length).padStart(9, '0')}`.padEnd(WIDTH));
  return `${lines.join('\n')}\n`;
}

export const abu: BatchFormat = {
  name: 'abu',
  writeInquiry,
  parseResponse: (text) => readBatch(text, reader),
};
