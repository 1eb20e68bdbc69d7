// The envelope both formats share (one header, detail records, one counting trailer) and the field checks they reuse.
import { isDeepStrictEqual } from 'node:util';
import { VaultError } from '../../errors';
import { luhnValid } from '../../domain/pan';
import type { Inquiry, ParseError, ParseErrorCode } from './types';

/** A failure carries no value, so it passes up unchanged from a field reader to a record reader. */
export type Failure = { ok: false; code: ParseErrorCode; message: string };
export type Read<T> = { ok: true; value: T } | Failure;

export function ok<T>(value: T): Read<T> {
  return { ok: true, value };
}

export function fail(code: ParseErrorCode, message: string): Failure {
  return { ok: false, code, message };
}

/** What a format knows about its envelope records; the envelope rules live once, in readBatch. */
export interface Envelope {
  recordType(line: string): 'header' | 'detail' | 'trailer' | 'unknown';
  readHeader(line: string): Read<string>;
  readTrailer(line: string): Read<number>;
  /** Names the valid record types for the unknown-record message (the line itself may be card data). */
  recordTypes: string;
}

/** What a file yielded: inquiries on the network's side, responses on ours. */
export interface BatchRead<T> {
  batchId?: string;
  details: T[];
  errors: ParseError[];
}

/**
 * Reads one inquiry or response file. Bad records are reported and skipped; the good ones are still returned,
 * except when the header is missing or unusable, because then nothing proves which batch the file belongs to.
 */
export function readBatch<T extends { ref: string }>(text: string, envelope: Envelope, readDetail: (line: string) => Read<T>): BatchRead<T> {
  const lines = text.split(/\r?\n/);
  // A final newline (or several) is how text files end, not a blank record.
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const errors: ParseError[] = [];
  const details: T[] = [];
  const report = (line: number, code: ParseErrorCode, message: string): void => {
    errors.push({ line, code, message });
  };
  if (lines.length === 0) {
    report(0, 'empty_file', 'the file has no records');
    return { details, errors };
  }

  let batchId: string | undefined;
  let trailerSeen = false;
  let declaredCount: number | undefined;
  let trailerLine = 0;
  let detailCount = 0;
  const kept = new Map<string, T>();
  const conflicting = new Set<string>();

  if (envelope.recordType(lines[0]!) !== 'header') report(1, 'missing_header', 'the first record is not a header record');
  for (const [index, line] of lines.entries()) {
    const n = index + 1;
    const type = line.trim() === '' ? 'blank' : envelope.recordType(line);
    if (trailerSeen) report(n, 'record_after_trailer', 'a record follows the trailer record');
    else if (type === 'blank') report(n, 'blank_line', 'the line is blank');
    else if (type === 'unknown') report(n, 'unknown_record_type', `the record type is not one of ${envelope.recordTypes}`);
    else if (type === 'header' && n !== 1) report(n, 'misplaced_header', 'a header record may only be the first record');
    else if (type === 'header') {
      const header = envelope.readHeader(line);
      if (header.ok) batchId = header.value;
      else report(n, header.code, header.message);
    } else if (type === 'trailer') {
      trailerSeen = true;
      trailerLine = n;
      const trailer = envelope.readTrailer(line);
      if (trailer.ok) declaredCount = trailer.value;
      else report(n, trailer.code, trailer.message);
    } else {
      // The trailer counts detail records as sent, so a rejected one still counts.
      detailCount++;
      const detail = readDetail(line);
      if (!detail.ok) report(n, detail.code, detail.message);
      // Two records for one card cannot both be acted on, and picking one would be a guess: a record repeated
      // as it was is read once, one that says something else leaves the card unanswered.
      else if (kept.has(detail.value.ref)) {
        report(n, 'duplicate_reference', 'an earlier detail record has the same reference');
        if (!isDeepStrictEqual(kept.get(detail.value.ref), detail.value)) conflicting.add(detail.value.ref);
      } else {
        kept.set(detail.value.ref, detail.value);
        details.push(detail.value);
      }
    }
  }

  if (!trailerSeen) report(0, 'missing_trailer', 'the file has no trailer record; it may be truncated');
  else if (declaredCount !== undefined && declaredCount !== detailCount) {
    report(trailerLine, 'count_mismatch', `the trailer counts ${declaredCount} detail records but the file has ${detailCount}`);
  }
  const usable = batchId !== undefined;
  return { ...(usable ? { batchId } : {}), details: usable ? details.filter((d) => !conflicting.has(d.ref)) : [], errors };
}

/** Letters, digits, `_` and `-`: safe in every layout, and never mistaken for a card number. */
export const REF = /^(?![0-9]+$)[A-Za-z0-9_-]{1,32}$/;
const BATCH_ID = /^[A-Za-z0-9_-]{1,20}$/;
const MERCHANT_ID = /^[A-Za-z0-9_-]{1,15}$/;

export function isCardNumber(value: string): boolean {
  return /^[0-9]{12,19}$/.test(value) && luhnValid(value);
}

export function readRef(value: string, field: number): Read<string> {
  return REF.test(value) ? ok(value) : fail('invalid_reference', `field ${field} is not a valid reference`);
}

export function readBatchId(value: string, field: number): Read<string> {
  return BATCH_ID.test(value) ? ok(value) : fail('invalid_header', `field ${field} is not a valid batch id`);
}

export function readCount(value: string, field: number): Read<number> {
  return /^[0-9]{1,9}$/.test(value) ? ok(Number(value)) : fail('invalid_trailer', `field ${field} is not a record count`);
}

export function readMerchantId(value: string, field: number): Read<string> {
  return MERCHANT_ID.test(value) ? ok(value) : fail('invalid_merchant_id', `field ${field} is not a valid merchant id`);
}

export function readCardNumber(value: string, field: number): Read<string> {
  return isCardNumber(value) ? ok(value) : fail('invalid_card_number', `field ${field} is not a valid card number`);
}

/** Two-digit years are 20YY: the updater only ever sees cards that expire this century. */
export function readExpiry(value: string, order: 'MMYY' | 'YYMM', field: number): Read<{ month: number; year: number }> {
  const month = Number(order === 'MMYY' ? value.slice(0, 2) : value.slice(2));
  const year = 2000 + Number(order === 'MMYY' ? value.slice(2) : value.slice(0, 2));
  if (!/^[0-9]{4}$/.test(value) || month < 1 || month > 12) {
    return fail('invalid_expiry', `field ${field} is not a valid expiry date`);
  }
  return ok({ month, year });
}

/** The writer refuses what it cannot carry rather than emit a file the network would reject whole. */
export function checkInquiry(inquiry: Inquiry, index: number): void {
  const where = `inquiry ${index + 1}`;
  if (!REF.test(inquiry.ref)) throw new VaultError('invalid_field', `${where}: the reference must be 1-32 of A-Z a-z 0-9 _ - and not all digits`);
  if (!MERCHANT_ID.test(inquiry.merchantId)) throw new VaultError('invalid_field', `${where}: the merchant id must be 1-15 of A-Z a-z 0-9 _ -`);
  if (!isCardNumber(inquiry.pan)) throw new VaultError('invalid_card_number', `${where}: the card number is not 12-19 digits with a valid check digit`);
  if (!isExpiry(inquiry.expMonth, inquiry.expYear)) {
    throw new VaultError('invalid_expiry', `${where}: the expiry must be a month 1-12 of a year 2000-2099`);
  }
}

/** What readExpiry can read back: both formats write two-digit years. */
export function isExpiry(month: number | undefined, year: number | undefined): boolean {
  if (month === undefined || year === undefined || !Number.isInteger(month) || !Number.isInteger(year)) return false;
  return month >= 1 && month <= 12 && year >= 2000 && year <= 2099;
}

export function checkBatchId(batchId: string): void {
  if (!BATCH_ID.test(batchId)) throw new VaultError('invalid_field', 'the batch id must be 1-20 of A-Z a-z 0-9 _ -');
}

export function yyyymmdd(date: Date): string {
  return date.toISOString().slice(0, 10).replace(/-/g, '');
}

export function twoDigits(n: number): string {
  return String(n % 100).padStart(2, '0');
}
