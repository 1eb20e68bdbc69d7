// Webhook endpoints and the transactional outbox in PostgreSQL: one function per query, leases by SKIP LOCKED.
import { webhookBody, type WebhookEvent, type WebhookEventType } from '../updater/webhooks/events';
import type {
  ClaimedDelivery,
  DeliveryState,
  FailedAttempt,
  NewWebhookEndpoint,
  WebhookDelivery,
  WebhookEndpointRecord,
  WebhookStore,
} from '../updater/webhooks/ports';
import type { Queryable } from './db';
import { isUuid } from '../domain/uuid';

/**
 * Writes one outbox row per enabled endpoint of the event's tenant subscribed to its type, in the caller's
 * transaction, so the event exists exactly when the card change does. Idempotent on (endpoint, event id).
 */
export async function enqueueWebhookEvent(q: Queryable, event: WebhookEvent): Promise<number> {
  const rows = await q.query<{ id: string }>(
    `INSERT INTO webhook_outbox (event_id, tenant_id, endpoint_id, event_type, payload)
     SELECT $1, e.tenant_id, e.id, $3, $4::jsonb FROM webhook_endpoints e
     WHERE e.tenant_id = $2 AND e.disabled_at IS NULL AND $3 = ANY (e.events)
     ON CONFLICT (endpoint_id, event_id) DO NOTHING
     RETURNING id`,
    [event.id, event.tenantId, event.type, webhookBody(event)],
  );
  return rows.length;
}

interface EndpointRow {
  id: string;
  tenant_id: string;
  url: string;
  events: string[];
  data_key_id: string;
  iv: Buffer;
  tag: Buffer;
  secret_ciphertext: Buffer;
  created_at: Date;
  disabled_at: Date | null;
}

interface DeliveryRow {
  id: string;
  event_id: string;
  tenant_id: string;
  endpoint_id: string;
  event_type: string;
  payload: unknown;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: Date;
  last_status: number | null;
  last_error: string | null;
  created_at: Date;
  delivered_at: Date | null;
  dead_at: Date | null;
}

const ENDPOINT = 'id, tenant_id, url, events, data_key_id, iv, tag, secret_ciphertext, created_at, disabled_at';
const DELIVERY = `o.id::text AS id, o.event_id, o.tenant_id, o.endpoint_id, o.event_type, o.payload, o.state, o.attempts,
  o.next_attempt_at, o.last_status, o.last_error, o.created_at, o.delivered_at, o.dead_at`;
const BIGSERIAL = /^[1-9][0-9]{0,17}$/;
/** Back to a first attempt, due now; the last attempt's outcome goes with the count it belonged to. */
const REDRIVE_SET = `state = 'pending', attempts = 0, next_attempt_at = now(), leased_until = NULL, dead_at = NULL,
  last_status = NULL, last_error = NULL`;

const toEndpoint = (r: EndpointRow): WebhookEndpointRecord => ({
  id: r.id,
  tenantId: r.tenant_id,
  url: r.url,
  events: r.events as WebhookEventType[],
  sealedSecret: { dataKeyId: r.data_key_id, iv: r.iv, tag: r.tag, ciphertext: r.secret_ciphertext },
  createdAt: r.created_at,
  disabledAt: r.disabled_at,
});

const toDelivery = (r: DeliveryRow): WebhookDelivery => ({
  id: r.id,
  eventId: r.event_id,
  endpointId: r.endpoint_id,
  eventType: r.event_type,
  payload: r.payload,
  state: r.state,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  lastStatus: r.last_status,
  lastError: r.last_error,
  createdAt: r.created_at,
  deliveredAt: r.delivered_at,
  deadAt: r.dead_at,
});

export class PgWebhookStore implements WebhookStore {
  constructor(private readonly q: Queryable) {}

  async insertEndpoint(e: NewWebhookEndpoint): Promise<WebhookEndpointRecord> {
    const rows = await this.q.query<EndpointRow>(
      `INSERT INTO webhook_endpoints (id, tenant_id, url, events, data_key_id, iv, tag, secret_ciphertext)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${ENDPOINT}`,
      [e.id, e.tenantId, e.url, e.events, e.sealedSecret.dataKeyId, e.sealedSecret.iv, e.sealedSecret.tag, e.sealedSecret.ciphertext],
    );
    return toEndpoint(rows[0]!);
  }

  async listEndpoints(tenantId: string): Promise<WebhookEndpointRecord[]> {
    const rows = await this.q.query<EndpointRow>(`SELECT ${ENDPOINT} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id`, [tenantId]);
    return rows.map(toEndpoint);
  }

  /** An event enqueued by a transaction that read the endpoint just before this commits is dead-lettered at its claim. */
  async disableEndpoint(tenantId: string, id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const rows = await this.q.query<{ found: number }>(
      `WITH disabled AS (
         UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, now()) WHERE id = $1 AND tenant_id = $2 RETURNING id
       ), dropped AS (
         UPDATE webhook_outbox SET state = 'dead', dead_at = now(), leased_until = NULL, last_error = 'endpoint_disabled'
         WHERE endpoint_id IN (SELECT id FROM disabled) AND state = 'pending' RETURNING id
       )
       SELECT (SELECT count(*) FROM disabled)::int AS found, (SELECT count(*) FROM dropped)::int AS dropped`,
      [id, tenantId],
    );
    return rows[0]!.found === 1;
  }

  /**
   * SKIP LOCKED lets concurrent deliverers pass over each other's rows instead of waiting, and the lease keeps a
   * row from being claimed again until it passes; a deliverer that dies mid-send gives its rows back that way.
   */
  async claimDue(limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    const rows = await this.q.query<DeliveryRow & EndpointRow & { url: string }>(
      `WITH claimed AS (
         UPDATE webhook_outbox o SET leased_until = now() + $2::double precision * interval '1 millisecond'
         WHERE o.id IN (
           SELECT d.id FROM webhook_outbox d
           WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND (d.leased_until IS NULL OR d.leased_until < now())
           ORDER BY d.next_attempt_at LIMIT $1
           FOR UPDATE SKIP LOCKED
         )
         RETURNING o.id, o.event_id, o.event_type, o.tenant_id, o.endpoint_id, o.payload, o.attempts
       )
       SELECT c.id::text AS id, c.event_id, c.event_type, c.tenant_id, c.endpoint_id, c.payload, c.attempts,
              e.url, e.data_key_id, e.iv, e.tag, e.secret_ciphertext, e.disabled_at
       FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id`,
      [limit, leaseMs],
    );
    return rows.map((r) => ({
      id: r.id,
      eventId: r.event_id,
      eventType: r.event_type,
      tenantId: r.tenant_id,
      endpointId: r.endpoint_id,
      url: r.url,
      sealedSecret: { dataKeyId: r.data_key_id, iv: r.iv, tag: r.tag, ciphertext: r.secret_ciphertext },
      payload: r.payload,
      attempts: r.attempts,
      endpointDisabled: r.disabled_at !== null,
    }));
  }

  /** Whatever the row's state: a send that succeeded is recorded as such even if the endpoint was disabled meanwhile. */
  async markDelivered(id: string, status: number): Promise<void> {
    await this.q.query(
      `UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = now(), dead_at = NULL,
         leased_until = NULL, last_status = $2, last_error = NULL
       WHERE id = $1`,
      [id, status],
    );
  }

  async recordFailure(id: string, failure: FailedAttempt, delayMs: number): Promise<void> {
    await this.q.query(
      `UPDATE webhook_outbox SET attempts = attempts + 1, leased_until = NULL, last_status = $2, last_error = $3,
         next_attempt_at = now() + $4::double precision * interval '1 millisecond'
       WHERE id = $1 AND state = 'pending'`,
      [id, failure.status, failure.error, delayMs],
    );
  }

  async markDead(id: string, failure: FailedAttempt, attempted: boolean): Promise<void> {
    await this.q.query(
      `UPDATE webhook_outbox SET state = 'dead', attempts = attempts + $4::int, dead_at = now(), leased_until = NULL,
         last_status = $2, last_error = $3
       WHERE id = $1 AND state = 'pending'`,
      [id, failure.status, failure.error, attempted ? 1 : 0],
    );
  }

  async listDeliveries(tenantId: string, state: DeliveryState | undefined, limit: number): Promise<WebhookDelivery[]> {
    const rows = await this.q.query<DeliveryRow>(
      `SELECT ${DELIVERY} FROM webhook_outbox o WHERE o.tenant_id = $1 AND ($2::text IS NULL OR o.state = $2)
       ORDER BY o.id DESC LIMIT $3`,
      [tenantId, state ?? null, limit],
    );
    return rows.map(toDelivery);
  }

  async findDelivery(tenantId: string, id: string): Promise<WebhookDelivery | undefined> {
    if (!BIGSERIAL.test(id)) return undefined;
    const rows = await this.q.query<DeliveryRow>(`SELECT ${DELIVERY} FROM webhook_outbox o WHERE o.id = $1 AND o.tenant_id = $2`, [id, tenantId]);
    return rows[0] && toDelivery(rows[0]);
  }

  async redriveDelivery(tenantId: string, id: string): Promise<WebhookDelivery | undefined> {
    if (!BIGSERIAL.test(id)) return undefined;
    const rows = await this.q.query<DeliveryRow>(
      `UPDATE webhook_outbox o SET ${REDRIVE_SET}
       FROM webhook_endpoints e
       WHERE o.id = $1 AND o.tenant_id = $2 AND o.state = 'dead' AND e.id = o.endpoint_id AND e.disabled_at IS NULL
       RETURNING ${DELIVERY}`,
      [id, tenantId],
    );
    return rows[0] && toDelivery(rows[0]);
  }

  async redriveDead(tenantId: string): Promise<number> {
    const rows = await this.q.query<{ id: string }>(
      `UPDATE webhook_outbox o SET ${REDRIVE_SET}
       FROM webhook_endpoints e
       WHERE o.tenant_id = $1 AND o.state = 'dead' AND e.id = o.endpoint_id AND e.disabled_at IS NULL
       RETURNING o.id`,
      [tenantId],
    );
    return rows.length;
  }
}
