// Our VAU-style batch format: writes inquiry files and reads response files, pipe-delimited, version VAU1.
//
// This is cardvault's own documented layout in the style of a Visa Account Updater exchange; it is not, and does
// not claim to be, the network's proprietary specification. One record per line (LF; CRLF accepted), fields
// separated by `|`, no quoting, so no field may contain `|`. Fields are numbered from 1, the record type included.
//
// Inquiry file (we send):
//   H|batchId|YYYYMMDD|VAU1       header: batch id (1-20 of A-Z a-z 0-9 _ -), creation date (UTC), version
//   D|ref|merchantId|pan|MMYY     detail, one per card: our reference (1-32 of A-Z a-z 0-9 _ -, not all digits),
//                                 merchant id (1-15 of the same), card number (12-19 digits), expiry on file
//   T|count                       trailer: number of D records (1-9 digits)
// Response file (the network returns):
//   H|batchId|YYYYMMDD|VAU1       header: the batch id of the inquiry file it answers
//   D|ref|code|newPan|newMMYY     detail: always five fields; newPan and newMMYY are empty unless the code uses them
//   T|count                       trailer: number of D records
// Response codes: A new account number (newPan required, newMMYY optional), E new expiry (newMMYY required,
// newPan empty), C account closed, Q contact cardholder, V no change, P no match, N non-participating BIN,
// O cardholder opted out (C Q V P N O carry neither new field).
import { checkBatchId, checkInquiry, fail, ok, readBatch, readBatchId, readCount, readExpiry, readNewPan, readRef, requireEmpty, twoDigits, yyyymmdd } from './batch-file';
import type { Read, RecordReader } from './batch-file';
import type { BatchFormat, Inquiry, NetworkResponse, UpdateOutcome } from './types';

const VERSION = 'VAU1';

const OUTCOMES: Readonly<Record<string, UpdateOutcome>> = {
  A: 'new_account',
  E: 'new_expiry',
  C: 'closed',
  Q: 'contact_cardholder',
  V: 'no_change',
  P: 'no_match',
  N: 'non_participating',
  O: 'opted_out',
};

const FIELD_COUNTS = { H: 4, D: 5, T: 2 } as const;
type RecordType = keyof typeof FIELD_COUNTS;

function fields(line: string, type: RecordType): Read<string[]> {
  const parts = line.split('|');
  if (parts.length !== FIELD_COUNTS[type]) {
    return fail('malformed_record', `${type} records have ${FIELD_COUNTS[type]} fields, this one has ${parts.length}`);
  }
  return ok(parts);
}

function readHeader(line: string): Read<string> {
  const f = fields(line, 'H');
  if (!f.ok) return fail('invalid_header', f.message);
  const [, batchId = '', date = '', version = ''] = f.value;
  if (!/^[0-9]{8}$/.test(date)) return fail('invalid_header', 'field 3 is not a date in YYYYMMDD form');
  if (version !== VERSION) return fail('invalid_header', `field 4 is not the supported version ${VERSION}`);
  return readBatchId(batchId, 2);
}

function readTrailer(line: string): Read<number> {
  const f = fields(line, 'T');
  if (!f.ok) return fail('invalid_trailer', f.message);
  return readCount(f.value[1] ?? '', 2);
}

function readDetail(line: string): Read<NetworkResponse> {
  const f = fields(line, 'D');
  if (!f.ok) return f;
  const [, refField = '', code = '', newPan = '', newExpiry = ''] = f.value;
  const ref = readRef(refField, 2);
  if (!ref.ok) return ref;
  const outcome = OUTCOMES[code];
  if (outcome === undefined) return fail('unknown_response_code', 'field 3 is not a known VAU response code');
  const base: NetworkResponse = { ref: ref.value, outcome, networkCode: code };

  if (code === 'A') {
    const pan = readNewPan(newPan, 4);
    if (!pan.ok) return pan;
    if (newExpiry === '') return ok({ ...base, newPan: pan.value });
    const expiry = readExpiry(newExpiry, 'MMYY', 5);
    if (!expiry.ok) return expiry;
    return ok({ ...base, newPan: pan.value, newExpMonth: expiry.value.month, newExpYear: expiry.value.year });
  }
  const panEmpty = requireEmpty(newPan, 4, code);
  if (!panEmpty.ok) return panEmpty;
  if (code === 'E') {
    const expiry = readExpiry(newExpiry, 'MMYY', 5);
    if (!expiry.ok) return expiry;
    return ok({ ...base, newExpMonth: expiry.value.month, newExpYear: expiry.value.year });
  }
  const expiryEmpty = requireEmpty(newExpiry, 5, code);
  return expiryEmpty.ok ? ok(base) : expiryEmpty;
}

const reader: RecordReader = {
  recordType(line) {
    const type = line.split('|', 1)[0] ?? '';
    if (type === 'H') return 'header';
    if (type === 'D') return 'detail';
    if (type === 'T') return 'trailer';
    return 'unknown';
  },
  readHeader,
  readDetail,
  readTrailer,
  recordTypes: 'H, D or T',
};

function writeInquiry(batchId: string, inquiries: readonly Inquiry[], createdAt: Date = new Date()): string {
  checkBatchId(batchId);
  inquiries.forEach(checkInquiry);
  const lines = [`H|${batchId}|${yyyymmdd(createdAt)}|${VERSION}`];
  for (const { ref, merchantId, pan, expMonth, expYear } of inquiries) {
    lines.push(`D|${ref}|${merchantId}|${pan}|${twoDigits(expMonth)}${twoDigits(expYear)}`);
  }
  lines.push(`T|${inquiries.length}`);
  return `${lines.join('\n')}\n`;
}

export const vau: BatchFormat = {
  name: 'vau',
  writeInquiry,
  parseResponse: (text) => readBatch(text, reader),
};
