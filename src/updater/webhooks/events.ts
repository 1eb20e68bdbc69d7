// The merchant-facing events the account updater emits: masked card data, the change and where it came from.

export const WEBHOOK_EVENT_TYPES = ['card.updated', 'card.expiry_updated', 'card.closed', 'card.contact_cardholder'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Never a PAN: the token, the masked number before and after, the expiry, and why. */
export interface CardEventData {
  token: string;
  /** The card as it is now: BIN and last 4 only. */
  card: { brand: string; bin: string; last4: string; exp_month: number; exp_year: number; status: string };
  /** Present on card.updated: the masked number the token held before. */
  previous?: { bin: string; last4: string; exp_month: number; exp_year: number };
  /** The new expiry, on card.updated and card.expiry_updated. */
  new_expiry?: { exp_month: number; exp_year: number };
  /** The outcome and the network's raw code, e.g. new_account / A. */
  reason: { outcome: string; network: string; network_code: string };
  /** `batch` for a scheduled or requested run, `real_time` for POST /v1/tokens/{token}/refresh. */
  source: 'batch' | 'real_time';
  /** The card version this event announces (GET /v1/tokens/{token}/updates). */
  version: number;
  /** On card.updated after a merge: the token whose duplicate card now resolves to this one. */
  merged_token?: string;
}

/** One event as delivered: `id` is stable across retries and re-drives, so receivers deduplicate on it. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  tenantId: string;
  createdAt: Date;
  data: CardEventData;
}

/** The JSON body a receiver gets; the signature covers exactly these bytes. */
export function webhookBody(event: WebhookEvent): string {
  return JSON.stringify({ id: event.id, type: event.type, created_at: event.createdAt.toISOString(), data: event.data });
}
