// What the webhook use cases and the deliverer need from storage; store/webhook-store.ts implements it.
import type { SealedCard } from '../../domain/ports';
import type { WebhookEventType } from './events';

export const DELIVERY_STATES = ['pending', 'delivered', 'dead'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

export interface WebhookEndpointRecord {
  id: string;
  tenantId: string;
  url: string;
  events: WebhookEventType[];
  /** The HMAC secret, sealed under a tenant data key and bound to tenant and endpoint id. */
  sealedSecret: SealedCard;
  createdAt: Date;
  disabledAt: Date | null;
}

export type NewWebhookEndpoint = Omit<WebhookEndpointRecord, 'createdAt' | 'disabledAt'>;

/** One event for one endpoint, as the merchant may see it: the payload is masked card data only. */
export interface WebhookDelivery {
  /** A bigserial, as a decimal string. */
  id: string;
  eventId: string;
  endpointId: string;
  eventType: string;
  payload: unknown;
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: Date;
  /** The HTTP status of the last attempt, if it got one. */
  lastStatus: number | null;
  /** A short code (`http_500`, `timeout`, `connection_refused`), never a response body. */
  lastError: string | null;
  createdAt: Date;
  deliveredAt: Date | null;
  deadAt: Date | null;
}

/** A due delivery leased to one deliverer, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  eventId: string;
  eventType: string;
  tenantId: string;
  endpointId: string;
  url: string;
  sealedSecret: SealedCard;
  payload: unknown;
  /** Attempts made before this one. */
  attempts: number;
  /** Disabled after the event was enqueued: the deliverer dead-letters it unsent. */
  endpointDisabled: boolean;
}

export interface FailedAttempt {
  status: number | null;
  error: string;
}

export interface WebhookStore {
  insertEndpoint(endpoint: NewWebhookEndpoint): Promise<WebhookEndpointRecord>;
  listEndpoints(tenantId: string): Promise<WebhookEndpointRecord[]>;
  /** Disables the tenant's endpoint and dead-letters its pending deliveries; false if the tenant has no such endpoint. */
  disableEndpoint(tenantId: string, id: string): Promise<boolean>;
  /** Leases up to `limit` due deliveries for `leaseMs`; no row is leased to two deliverers at once. */
  claimDue(limit: number, leaseMs: number): Promise<ClaimedDelivery[]>;
  markDelivered(id: string, status: number): Promise<void>;
  /** Counts the attempt and schedules the next one `delayMs` from now (the database's clock). */
  recordFailure(id: string, failure: FailedAttempt, delayMs: number): Promise<void>;
  /** Stops retrying; `attempted`: the failure was a send, and counts as an attempt. */
  markDead(id: string, failure: FailedAttempt, attempted: boolean): Promise<void>;
  listDeliveries(tenantId: string, state: DeliveryState | undefined, limit: number): Promise<WebhookDelivery[]>;
  findDelivery(tenantId: string, id: string): Promise<WebhookDelivery | undefined>;
  /** A dead delivery to an enabled endpoint back to pending, attempts 0, due now; undefined if there was none. */
  redriveDelivery(tenantId: string, id: string): Promise<WebhookDelivery | undefined>;
  /** Every dead delivery of the tenant to an enabled endpoint, as redriveDelivery; returns how many. */
  redriveDead(tenantId: string): Promise<number>;
}
