// One bench request against a running vault: fresh test PANs, the HTTP call, and a printable name for a failure.
import { randomInt, randomUUID } from 'node:crypto';
import { Pool, type Dispatcher } from 'undici';
import type { Runner } from './phase';
import { isStandInReply, STAND_IN_TOKEN } from './stand-in';

export type Op = 'tokenize' | 'detokenize';

/** Visa's documented test BIN: a generated number can never be someone's card. */
const TEST_BIN = '411111';
const EXPIRY = { exp_month: 12, exp_year: new Date().getUTCFullYear() + 3 };
const DETOKENIZE_BODY = JSON.stringify({ purpose: 'authorization' });

interface Reply {
  status: number;
  body: string;
}

/**
 * The load generator's HTTP client: an undici pool of keep-alive connections. It shares the vault's two cores,
 * so it should cost as little CPU per request as a well-kept client allows (node:http's costs about twice as much).
 */
export function openClient(port: number, connections: number): Pool {
  return new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
}

export async function send(
  client: Dispatcher,
  method: Dispatcher.HttpMethod,
  urlPath: string,
  apiKey?: string,
  body?: string,
  extraHeaders: Record<string, string> = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...extraHeaders };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await client.request({ method, path: urlPath, headers, body });
  return { status: res.statusCode, body: await res.body.text() };
}

/** Luhn-completes TEST_BIN + 9 random digits; `issued` keeps every number unique within the run. */
function freshTestPan(issued: Set<string>): string {
  for (;;) {
    const body = TEST_BIN + String(randomInt(1_000_000_000)).padStart(9, '0');
    let sum = 0;
    for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
      let digit = body.charCodeAt(i) - 48;
      if (double && (digit *= 2) > 9) digit -= 9;
      sum += digit;
    }
    const pan = body + String((10 - (sum % 10)) % 10);
    if (!issued.has(pan)) {
      issued.add(pan);
      return pan;
    }
  }
}

/** Only the problem `code` (a closed set) or a socket error code is ever printed: never a body, PAN or key. */
function failureName(op: Op, reply: Reply | undefined, err?: unknown): string {
  if (!reply) {
    const code = (err as { code?: unknown })?.code;
    return `${op} client ${typeof code === 'string' && /^[A-Z_]{1,40}$/.test(code) ? code : 'error'}`;
  }
  let code = 'unparsed';
  try {
    const parsed = (JSON.parse(reply.body) as { code?: unknown }).code;
    if (typeof parsed === 'string' && /^[a-z_]{1,40}$/.test(parsed)) code = parsed;
  } catch {
    // not a problem document; the status says enough
  }
  return `${op} ${reply.status} ${code}`;
}

interface Card {
  token: string;
  pan: string;
}

/** The operations against a running vault; `#cards` grows with every tokenization and feeds detokenize. */
export class Workload implements Runner {
  readonly #cards: Card[];
  readonly #issued: Set<string>;

  constructor(
    private readonly client: Dispatcher,
    private readonly keys: { merchant: string; payments: string },
    private readonly idempotencyKeys = false,
    shared?: { cards: Card[]; issued: Set<string> },
  ) {
    this.#cards = shared?.cards ?? [];
    this.#issued = shared?.issued ?? new Set<string>();
  }

  /** The same cards and issued PANs (so a fresh PAN is never repeated), sent through another client. */
  withClient(client: Dispatcher): Workload {
    return new Workload(client, this.keys, this.idempotencyKeys, { cards: this.#cards, issued: this.#issued });
  }

  /** How many cards this workload has vaulted so far: detokenize needs one. */
  get vaulted(): number {
    return this.#cards.length;
  }

  /** Runs one operation; resolves with undefined on success, else a printable failure name. */
  async run(op: Op): Promise<string | undefined> {
    try {
      return op === 'tokenize' ? await this.tokenize() : await this.detokenize();
    } catch (err) {
      return failureName(op, undefined, err);
    }
  }

  private async tokenize(): Promise<string | undefined> {
    const pan = freshTestPan(this.#issued);
    const body = JSON.stringify({ card: { number: pan, ...EXPIRY } });
    const headers: Record<string, string> = this.idempotencyKeys ? { 'idempotency-key': randomUUID() } : {};
    const reply = await send(this.client, 'POST', '/v1/tokens', this.keys.merchant, body, headers);
    // 200 would mean the vault converged on an existing card: not a fresh tokenization.
    if (reply.status !== 201) return failureName('tokenize', reply);
    this.#cards.push({ token: (JSON.parse(reply.body) as { token: string }).token, pan });
    return undefined;
  }

  private async detokenize(): Promise<string | undefined> {
    const card = this.#cards[randomInt(this.#cards.length)];
    if (!card) return 'detokenize no-token-yet';
    const reply = await send(this.client, 'POST', `/v1/tokens/${card.token}/detokenize`, this.keys.payments, DETOKENIZE_BODY);
    if (reply.status !== 200) return failureName('detokenize', reply);
    const revealed = JSON.parse(reply.body) as { card?: { number?: string } };
    return revealed.card?.number === card.pan ? undefined : 'detokenize 200 wrong_card';
  }
}

/** The vault's detokenize request, headers and body alike, sent to a stand-in (stand-in.ts) that answers at once. */
export class StandInWorkload implements Runner {
  constructor(
    private readonly client: Dispatcher,
    /** Sent so the request weighs what the vault's does; the stand-in reads no header. */
    private readonly apiKey: string,
  ) {}

  async run(op: Op): Promise<string | undefined> {
    try {
      const reply = await send(this.client, 'POST', `/v1/tokens/${STAND_IN_TOKEN}/detokenize`, this.apiKey, DETOKENIZE_BODY);
      return isStandInReply(reply.status, reply.body) ? undefined : `${op} ${reply.status} stand-in`;
    } catch (err) {
      return failureName(op, undefined, err);
    }
  }
}
