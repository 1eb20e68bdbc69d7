// Our VAU-style batch format, both ends of the exchange: inquiry and response files, pipe-delimited, version VAU1.
//
// This is cardvault's own documented layout in the style of a Visa Account Updater exchange; it is not, and does
// not claim to be, the network's proprietary specification. One record per line (LF; CRLF accepted), fields
// separated by `|`, no quoting, so no field may contain `|`. Fields are numbered from 1, the record type included.
//
// Inquiry file (we write it with writeInquiry; the network, or the simulator, reads it with parseInquiry):
//   H|batchId|YYYYMMDD|VAU1       header: batch id (1-20 of A-Z a-z 0-9 _ -), creation date (UTC), version
//   D|ref|merchantId|pan|MMYY     detail, one per card: our reference (1-32 of A-Z a-z 0-9 _ -, not all digits),
//                                 merchant id (1-15 of the same), card number (12-19 digits), expiry on file
//   T|count                       trailer: number of D records (1-9 digits)
// Response file (the network writes it with writeResponse; we read it with parseResponse):
//   H|batchId|YYYYMMDD|VAU1       header: the batch id of the inquiry file it answers
//   D|ref|code|newPan|newMMYY     detail: always five fields; newPan and newMMYY are empty unless the code uses them
//   T|count                       trailer: number of D records
// Response codes: A new account number (newPan required, newMMYY optional), E new expiry (newMMYY required,
// newPan empty), C account closed, Q contact cardholder, V no change, P no match, N non-participating BIN,
// O cardholder opted out (C Q V P N O carry neither new field).
// VAU has no code for the outcome `unknown` (the network could not say): writeResponse writes it as P, no match,
// the code that claims least about the card (V would call it unchanged, N and O blame the issuer or cardholder),
// so it reads back as no_match.
import { checkBatchId, checkInquiry, fail, ok, readBatch, readBatchId, readCardNumber, readCount, readExpiry, readMerchantId, readRef, twoDigits, yyyymmdd } from './batch-file';
import type { Envelope, Read } from './batch-file';
import { codeResponses, readAnswer, type CodeTable, type ResponseCode } from './response-codes';
import type { BatchFormat, Inquiry, NetworkResponse } from './types';

const VERSION = 'VAU1';

const NEITHER = { newPan: 'absent', newExpiry: 'absent' } as const;
const CODES: Readonly<Record<string, ResponseCode>> = {
  A: { outcome: 'new_account', newPan: 'required', newExpiry: 'optional' },
  E: { outcome: 'new_expiry', newPan: 'absent', newExpiry: 'required' },
  C: { outcome: 'closed', ...NEITHER },
  Q: { outcome: 'contact_cardholder', ...NEITHER },
  V: { outcome: 'no_change', ...NEITHER },
  P: { outcome: 'no_match', ...NEITHER },
  N: { outcome: 'non_participating', ...NEITHER },
  O: { outcome: 'opted_out', ...NEITHER },
};

const TABLE: CodeTable = {
  name: 'VAU',
  expiryOrder: 'MMYY',
  codes: CODES,
  writes: {
    new_account: 'A',
    new_expiry: 'E',
    closed: 'C',
    contact_cardholder: 'Q',
    no_change: 'V',
    no_match: 'P',
    non_participating: 'N',
    opted_out: 'O',
    unknown: 'P', // no VAU code: the closest, see the header comment
  },
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

const envelope: Envelope = {
  recordType(line) {
    const type = line.split('|', 1)[0] ?? '';
    if (type === 'H') return 'header';
    if (type === 'D') return 'detail';
    if (type === 'T') return 'trailer';
    return 'unknown';
  },
  readHeader(line) {
    const f = fields(line, 'H');
    if (!f.ok) return fail('invalid_header', f.message);
    const [, batchId = '', date = '', version = ''] = f.value;
    if (!/^[0-9]{8}$/.test(date)) return fail('invalid_header', 'field 3 is not a date in YYYYMMDD form');
    if (version !== VERSION) return fail('invalid_header', `field 4 is not the supported version ${VERSION}`);
    return readBatchId(batchId, 2);
  },
  readTrailer(line) {
    const f = fields(line, 'T');
    if (!f.ok) return fail('invalid_trailer', f.message);
    return readCount(f.value[1] ?? '', 2);
  },
  recordTypes: 'H, D or T',
};

function readResponse(line: string): Read<NetworkResponse> {
  const f = fields(line, 'D');
  if (!f.ok) return f;
  const [, refField = '', code = '', newPan = '', newExpiry = ''] = f.value;
  const ref = readRef(refField, 2);
  return ref.ok ? readAnswer(TABLE, ref.value, code, newPan, newExpiry) : ref;
}

function readInquiry(line: string): Read<Inquiry> {
  const f = fields(line, 'D');
  if (!f.ok) return f;
  const [, refField = '', merchantField = '', panField = '', expiryField = ''] = f.value;
  const ref = readRef(refField, 2);
  if (!ref.ok) return ref;
  const merchantId = readMerchantId(merchantField, 3);
  if (!merchantId.ok) return merchantId;
  const pan = readCardNumber(panField, 4);
  if (!pan.ok) return pan;
  const expiry = readExpiry(expiryField, 'MMYY', 5);
  if (!expiry.ok) return expiry;
  return ok({ ref: ref.value, pan: pan.value, expMonth: expiry.value.month, expYear: expiry.value.year, merchantId: merchantId.value });
}

const mmyy = (month: number, year: number): string => `${twoDigits(month)}${twoDigits(year)}`;

/** Header, details, trailer: the same envelope in both directions. */
function batchFile(batchId: string, createdAt: Date, details: string[]): string {
  return `${[`H|${batchId}|${yyyymmdd(createdAt)}|${VERSION}`, ...details, `T|${details.length}`].join('\n')}\n`;
}

function writeInquiry(batchId: string, inquiries: readonly Inquiry[], createdAt: Date = new Date()): string {
  checkBatchId(batchId);
  inquiries.forEach(checkInquiry);
  const details = inquiries.map(({ ref, merchantId, pan, expMonth, expYear }) => `D|${ref}|${merchantId}|${pan}|${mmyy(expMonth, expYear)}`);
  return batchFile(batchId, createdAt, details);
}

function writeResponse(batchId: string, responses: readonly NetworkResponse[], createdAt: Date = new Date()): string {
  const codes = codeResponses(TABLE, batchId, responses);
  const details = responses.map(({ ref, newPan, newExpMonth, newExpYear }, i) => {
    const expiry = newExpMonth === undefined || newExpYear === undefined ? '' : mmyy(newExpMonth, newExpYear);
    return `D|${ref}|${codes[i]}|${newPan ?? ''}|${expiry}`;
  });
  return batchFile(batchId, createdAt, details);
}

export const vau: BatchFormat = {
  name: 'vau',
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
