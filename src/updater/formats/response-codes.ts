// A format's response codes, one table read both ways: parseResponse reads a code, writeResponse picks one.
import { VaultError } from '../../errors';
import { checkBatchId, fail, isCardNumber, isExpiry, ok, readCardNumber, readExpiry, REF } from './batch-file';
import type { Read } from './batch-file';
import type { NetworkResponse, UpdateOutcome } from './types';

export type Presence = 'required' | 'optional' | 'absent';

/** What one code means and which of the two new-card fields its detail record carries. */
export interface ResponseCode {
  outcome: UpdateOutcome;
  newPan: Presence;
  newExpiry: Presence;
}

export interface CodeTable {
  /** For messages: 'VAU' or 'ABU'. */
  name: string;
  expiryOrder: 'MMYY' | 'YYMM';
  codes: Readonly<Record<string, ResponseCode>>;
  /**
   * The code written for each outcome. Typed over every outcome so the compiler insists on a choice: an outcome the
   * format has no code for is written as the closest code the format documents, named in its header comment.
   */
  writes: Readonly<Record<UpdateOutcome, string>>;
}

/** Own properties only, so a field reading `constructor` or `toString` is an unknown code, not a prototype method. */
function lookUp(table: CodeTable, code: string): ResponseCode | undefined {
  return Object.hasOwn(table.codes, code) ? table.codes[code] : undefined;
}

function readField<T>(value: string, presence: Presence, field: number, code: string, read: (v: string) => Read<T>): Read<T | undefined> {
  if (presence === 'absent') {
    return value === '' ? ok(undefined) : fail('unexpected_field', `field ${field} must be empty for response code ${code}`);
  }
  return presence === 'optional' && value === '' ? ok(undefined) : read(value);
}

/** A response detail's fields as the layout cut them out: reference (field 2), code (3), new PAN (4), new expiry (5). */
export function readAnswer(table: CodeTable, ref: string, code: string, newPan: string, newExpiry: string): Read<NetworkResponse> {
  const meaning = lookUp(table, code);
  // The code is named in later messages only once it is known to be one of ours, so no file value leaks through.
  if (meaning === undefined) return fail('unknown_response_code', `field 3 is not a known ${table.name} response code`);
  const pan = readField(newPan, meaning.newPan, 4, code, (v) => readCardNumber(v, 4));
  if (!pan.ok) return pan;
  const expiry = readField(newExpiry, meaning.newExpiry, 5, code, (v) => readExpiry(v, table.expiryOrder, 5));
  if (!expiry.ok) return expiry;
  return ok({
    ref,
    outcome: meaning.outcome,
    networkCode: code,
    ...(pan.value === undefined ? {} : { newPan: pan.value }),
    ...(expiry.value === undefined ? {} : { newExpMonth: expiry.value.month, newExpYear: expiry.value.year }),
  });
}

/**
 * The outcome decides the code. The response's own networkCode is kept when this format reads it as the same
 * outcome, so an outcome with several codes keeps the one the network chose; a code from elsewhere (the
 * simulator's, another format's) is replaced, since this format would read it as something else or not at all.
 */
function codeFor(table: CodeTable, response: NetworkResponse, where: string): string {
  if (lookUp(table, response.networkCode)?.outcome === response.outcome) return response.networkCode;
  const code = Object.hasOwn(table.writes, response.outcome) ? table.writes[response.outcome] : undefined;
  if (code === undefined) throw new VaultError('invalid_field', `${where}: the outcome is not an update outcome`);
  return code;
}

function checkPresence(present: boolean, presence: Presence, where: string, field: string): void {
  if (present && presence === 'absent') throw new VaultError('invalid_field', `${where}: the response code carries no ${field}`);
  if (!present && presence === 'required') throw new VaultError('invalid_field', `${where}: the response code requires a ${field}`);
}

/**
 * Checks a whole response file before a line of it is written, refusing whatever parseResponse would reject,
 * and returns the code for each response in order.
 */
export function codeResponses(table: CodeTable, batchId: string, responses: readonly NetworkResponse[]): string[] {
  checkBatchId(batchId);
  const refs = new Set<string>();
  return responses.map((response, index) => {
    const where = `response ${index + 1}`;
    if (!REF.test(response.ref)) throw new VaultError('invalid_field', `${where}: the reference must be 1-32 of A-Z a-z 0-9 _ - and not all digits`);
    if (refs.has(response.ref)) throw new VaultError('invalid_field', `${where}: an earlier response has the same reference`);
    refs.add(response.ref);
    const code = codeFor(table, response, where);
    const meaning = table.codes[code]!;
    const { newPan, newExpMonth, newExpYear } = response;
    checkPresence(newPan !== undefined, meaning.newPan, where, 'new card number');
    if (newPan !== undefined && !isCardNumber(newPan)) {
      throw new VaultError('invalid_card_number', `${where}: the new card number is not 12-19 digits with a valid check digit`);
    }
    const hasExpiry = newExpMonth !== undefined || newExpYear !== undefined;
    checkPresence(hasExpiry, meaning.newExpiry, where, 'new expiry');
    if (hasExpiry && !isExpiry(newExpMonth, newExpYear)) {
      throw new VaultError('invalid_expiry', `${where}: the new expiry must be a month 1-12 of a year 2000-2099`);
    }
    return code;
  });
}
