// A stand-in card network for development and tests: answers each inquiry from the rules, deterministically.
import { createHmac } from 'node:crypto';
import { luhnValid } from '../../domain/pan';
import type { Inquiry, NetworkResponse, Outcome } from './contract';
import { loadSimulatorRules, parseSimulatorRules, type Answer, type RuleMatch, type SimulatorRules } from './simulator-rules';

/**
 * Not a secret: a fixed key so every simulator, on every machine, derives the same new PANs and buckets. It is an
 * HMAC key rather than a plain hash so the derived digits are not a bare function of the old PAN.
 */
const SIMULATOR_KEY = 'cardvault-network-simulator-v1';

/** The simulator's own codes, one per outcome, loosely after the single-letter codes real updaters return. */
export const SIMULATOR_CODES: Readonly<Record<Outcome, string>> = {
  new_account: 'A',
  new_expiry: 'E',
  closed: 'C',
  contact_cardholder: 'Q',
  no_change: 'V',
  no_match: 'N',
  non_participating: 'P',
  opted_out: 'O',
  unknown: 'U',
};

const DEFAULT_ADD_YEARS = 3;
const KEEP_DIGITS = 6;

function hmac(label: string, value: string): Buffer {
  return createHmac('sha256', SIMULATOR_KEY).update(`${label}:${value}`).digest();
}

/** Which of `every` buckets a ref (or PAN) falls in: stable across runs, machines and batch compositions. */
function bucketOf(value: string, every: number): number {
  return hmac('bucket', value).readUIntBE(0, 6) % every;
}

function withCheckDigit(body: string): string {
  for (let check = 0; check <= 9; check++) {
    if (luhnValid(`${body}${check}`)) return `${body}${check}`;
  }
  throw new Error('unreachable: one check digit always satisfies Luhn');
}

/** Same BIN, same length, middle digits from an HMAC of the old PAN, a valid check digit, and never the old PAN. */
export function deriveNewPan(oldPan: string): string {
  const middleLength = oldPan.length - KEEP_DIGITS - 1;
  for (let round = 0; ; round++) {
    const mac = hmac(`new_account:${round}`, oldPan);
    let middle = '';
    for (let i = 0; i < middleLength; i++) middle += String(mac[i] % 10);
    const candidate = withCheckDigit(oldPan.slice(0, KEEP_DIGITS) + middle);
    if (candidate !== oldPan) return candidate;
  }
}

/** A real network cannot match what is not a card number; neither does the simulator. */
function isCardNumber(pan: unknown): pan is string {
  return typeof pan === 'string' && /^[0-9]{12,19}$/.test(pan) && luhnValid(pan);
}

function matches(match: RuleMatch, inquiry: Inquiry): boolean {
  const { pan, ref } = inquiry;
  if (match.ref !== undefined && ref !== match.ref) return false;
  if (match.panPrefix !== undefined && !pan.startsWith(match.panPrefix)) return false;
  if (match.binRange !== undefined) {
    const head = pan.slice(0, match.binRange.from.length);
    if (head < match.binRange.from || head > match.binRange.to) return false;
  }
  if (match.last4 !== undefined && !pan.endsWith(match.last4)) return false;
  if (match.every !== undefined) {
    const key = match.by === 'pan' ? `pan:${pan}` : `ref:${ref}`;
    if (bucketOf(key, match.every) !== (match.offset ?? 0)) return false;
  }
  return true;
}

function answer(inquiry: Inquiry, { outcome, networkCode, addYears }: Answer): NetworkResponse {
  const response: NetworkResponse = { ref: inquiry.ref, outcome, networkCode: networkCode ?? SIMULATOR_CODES[outcome] };
  if (outcome === 'new_account') {
    response.newPan = deriveNewPan(inquiry.pan);
    if (addYears !== undefined) {
      response.newExpMonth = inquiry.expMonth;
      response.newExpYear = inquiry.expYear + addYears;
    }
  } else if (outcome === 'new_expiry') {
    response.newExpMonth = inquiry.expMonth;
    response.newExpYear = inquiry.expYear + (addYears ?? DEFAULT_ADD_YEARS);
  }
  return response;
}

export class NetworkSimulator {
  readonly #rules: SimulatorRules;

  constructor(rules: SimulatorRules) {
    // Validated again so a hand-built object gets the same checks as a file.
    this.#rules = parseSimulatorRules(structuredClone(rules));
  }

  /** The rules in src/updater/network/simulator-rules.yaml, or another rules file. */
  static fromFile(file?: string): NetworkSimulator {
    return new NetworkSimulator(loadSimulatorRules(file));
  }

  /** One response per inquiry, in order; each depends only on its own inquiry and the rules. */
  respond(inquiries: readonly Inquiry[]): NetworkResponse[] {
    return inquiries.map((inquiry) => {
      if (!isCardNumber(inquiry.pan)) return answer(inquiry, { outcome: 'no_match' });
      const rule = this.#rules.rules.find(({ match }) => matches(match, inquiry));
      return answer(inquiry, rule ?? this.#rules.default);
    });
  }
}
