// Sends due outbox rows to merchant endpoints, signed; retries with backoff and jitter, then dead-letters.
import { Agent, fetch } from 'undici';
import { randomFraction } from '../../crypto/random';
import type { CardCrypto } from '../../domain/ports';
import { startTrace, formatTraceparent, type TraceContext } from '../../http/trace-context';
import type { Logger } from '../../log';
import type { ClaimedDelivery, FailedAttempt, WebhookStore } from './ports';
import { SIGNATURE_HEADER, signatureHeader } from './signature';
import { InternalAddressError, isInternalHost, publicOnlyLookup } from './egress';

export interface DelivererOptions {
  /** The delay after the first failed attempt; each later one doubles it. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Attempts in all, the first included; the last failure dead-letters the delivery. */
  maxAttempts: number;
  /** Per request, connection to response headers. */
  timeoutMs: number;
  /** Rows claimed per round. */
  batchSize: number;
  /** How long a claimed row is held; past it, another deliverer may take it (this one died). */
  leaseMs: number;
}

export const DEFAULT_DELIVERER_OPTIONS: DelivererOptions = {
  baseDelayMs: 30_000,
  maxDelayMs: 6 * 3600 * 1000,
  maxAttempts: 8,
  timeoutMs: 10_000,
  batchSize: 50,
  leaseMs: 60_000,
};

type SendResult = { delivered: true; status: number } | ({ delivered: false } & FailedAttempt);

export interface DeliveryCounts {
  delivered: number;
  retried: number;
  dead: number;
}

export interface WebhookDelivererDeps {
  store: WebhookStore;
  crypto: Pick<CardCrypto, 'openWebhookSecret'>;
  log: Logger;
  options?: Partial<DelivererOptions>;
  /** Unix milliseconds, for the signature's timestamp. */
  now?: () => number;
  /** In [0, 1), for the jitter. */
  random?: () => number;
  /** Told the result of each claimed delivery, for metrics. */
  onDelivery?: (result: keyof DeliveryCounts) => void;
  /**
   * Loopback, private and link-local endpoints too, by name or address; development and tests only (it follows
   * WEBHOOK_ALLOW_HTTP, refused in production). Otherwise every connection goes to a checked public address.
   */
  allowInternalAddresses?: boolean;
}

/**
 * Exponential backoff with "equal jitter": half the doubled delay is kept, the other half drawn at random, so
 * endpoints that failed together do not all retry together, and each wait is still at least half the last.
 */
export function retryDelayMs(failedAttempt: number, options: Pick<DelivererOptions, 'baseDelayMs' | 'maxDelayMs'>, random: () => number): number {
  const capped = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(failedAttempt - 1, 52));
  return capped / 2 + random() * (capped / 2);
}

/** A short code for a failed send; the cause's own message can quote the URL or the peer, so it is never kept. */
export function failureCode(err: unknown): string {
  // By name: AbortSignal.timeout rejects with a DOMException, which need not be an Error of this realm.
  const name = (err as { name?: unknown })?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  const cause = (err as { cause?: { code?: unknown } })?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  if (code === 'ECONNREFUSED') return 'connection_refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'connection_reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns_failure';
  if (code === 'EINTERNALADDRESS') return 'internal_address';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') return 'timeout';
  if (/CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return 'tls_error';
  return 'network_error';
}

export class WebhookDeliverer {
  private readonly options: DelivererOptions;
  private readonly now: () => number;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  /** Connections through it resolve the endpoint's name and go only to a public address (egress.ts). */
  private readonly dispatcher: Agent;

  constructor(private readonly deps: WebhookDelivererDeps) {
    this.dispatcher = new Agent(deps.allowInternalAddresses ? {} : { connect: { lookup: publicOnlyLookup() } });
    this.options = { ...DEFAULT_DELIVERER_OPTIONS, ...deps.options };
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? randomFraction;
  }

  /** One round: claims up to `limit` due rows and sends them concurrently. */
  async deliverDue(limit = this.options.batchSize): Promise<DeliveryCounts> {
    // The lease covers the slowest send of the round with room to record its outcome.
    const claimed = await this.deps.store.claimDue(limit, Math.max(this.options.leaseMs, this.options.timeoutMs * 2));
    const counts: DeliveryCounts = { delivered: 0, retried: 0, dead: 0 };
    // One row's failure to record its outcome must not lose the others'; its lease brings it back later.
    const outcomes = await Promise.allSettled(claimed.map((row) => this.deliverOne(row)));
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled' && outcome.value) {
        counts[outcome.value] += 1;
        this.deps.onDelivery?.(outcome.value);
      }
      if (outcome.status === 'rejected') this.deps.log.error({ err: outcome.reason, delivery_id: claimed[i]!.id }, 'webhook outcome not recorded');
    });
    return counts;
  }

  /** Rounds every `intervalMs`, and at once again after a full batch; errors are logged, never thrown. */
  start(intervalMs = 5_000): void {
    if (!this.stopped) return;
    this.stopped = false;
    const tick = async () => {
      let full = false;
      try {
        const counts = await this.deliverDue();
        full = counts.delivered + counts.retried + counts.dead >= this.options.batchSize;
      } catch (err) {
        this.deps.log.error({ err }, 'webhook delivery round failed');
      }
      if (this.stopped) return;
      this.timer = setTimeout(() => (this.running = tick()), full ? 0 : intervalMs);
      this.timer.unref();
    };
    this.running = tick();
  }

  /** Stops scheduling rounds and waits for the one in flight, so the database can be closed after it. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private async deliverOne(row: ClaimedDelivery): Promise<keyof DeliveryCounts | undefined> {
    const ids = { delivery_id: row.id, event_id: row.eventId, endpoint_id: row.endpointId, tenant_id: row.tenantId };
    if (row.endpointDisabled) {
      await this.deps.store.markDead(row.id, { status: null, error: 'endpoint_disabled' }, false);
      return 'dead';
    }
    let secret: string;
    try {
      secret = (await this.deps.crypto.openWebhookSecret(row.tenantId, row.endpointId, row.sealedSecret)).reveal();
    } catch (err) {
      // Our fault, not the endpoint's: no attempt is counted, and the row comes back when its lease runs out.
      this.deps.log.error({ err, ...ids }, 'webhook secret could not be opened');
      return undefined;
    }
    const attempt = row.attempts + 1;
    // Each attempt is a span of a trace of its own (what caused the event is not traced); the merchant's logs can quote it.
    const trace = startTrace();
    const sent = await this.send(row, secret, trace);
    if (sent.delivered) {
      await this.deps.store.markDelivered(row.id, sent.status);
      this.deps.log.info({ ...ids, attempt, status: sent.status, trace_id: trace.traceId, span_id: trace.spanId }, 'webhook delivered');
      return 'delivered';
    }
    const failure: FailedAttempt = { status: sent.status, error: sent.error };
    if (attempt >= this.options.maxAttempts) {
      await this.deps.store.markDead(row.id, failure, true);
      this.deps.log.warn({ ...ids, attempt, status: failure.status, failure: failure.error, trace_id: trace.traceId, span_id: trace.spanId }, 'webhook dead-lettered');
      return 'dead';
    }
    const delayMs = retryDelayMs(attempt, this.options, this.random);
    await this.deps.store.recordFailure(row.id, failure, delayMs);
    this.deps.log.warn(
      { ...ids, attempt, status: failure.status, failure: failure.error, retry_in_ms: Math.round(delayMs), trace_id: trace.traceId, span_id: trace.spanId },
      'webhook attempt failed',
    );
    return 'retried';
  }

  /** Delivered on a 2xx; otherwise what went wrong. The response body is never read. */
  private async send(row: ClaimedDelivery, secret: string, trace: TraceContext): Promise<SendResult> {
    // The stored event re-serialized (jsonb keeps no key order); the signature covers exactly these bytes.
    const body = JSON.stringify(row.payload);
    try {
      // An address in the URL is connected to without a lookup: checked here. A name is checked by the lookup.
      if (!this.deps.allowInternalAddresses && isInternalHost(new URL(row.url).hostname)) throw new TypeError('fetch failed', { cause: new InternalAddressError() });
      const response = await fetch(row.url, {
        dispatcher: this.dispatcher,
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'cardvault-webhooks/1',
          [SIGNATURE_HEADER]: signatureHeader(secret, Math.floor(this.now() / 1000), body),
          'Cardvault-Event-Id': row.eventId,
          'Cardvault-Event-Type': row.eventType,
          traceparent: formatTraceparent(trace),
        },
        body,
        // A redirect is a failure: following it would send the signed event somewhere the merchant did not register.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      await response.body?.cancel().catch(() => undefined);
      const status = response.status;
      return status >= 200 && status < 300 ? { delivered: true, status } : { delivered: false, status, error: `http_${status}` };
    } catch (err) {
      return { delivered: false, status: null, error: failureCode(err) };
    }
  }
}
