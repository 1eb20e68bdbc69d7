// Merchant webhook endpoints and their deliveries: create (the secret shown once), list, disable, re-drive.
import { audited } from '../../domain/audited';
import { authorize, type Principal } from '../../domain/policy';
import type { AuditTrail, CardCrypto, RequestContext } from '../../domain/ports';
import { mayHoldCardNumber } from '../../domain/pan';
import { Secret } from '../../domain/secret';
import { VaultError } from '../../errors';
import { isInternalHost } from './egress';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from './events';
import type { DeliveryState, WebhookDelivery, WebhookEndpointRecord, WebhookStore } from './ports';

export const MAX_WEBHOOK_URL_LENGTH = 2048;
/** The newest deliveries a listing shows. */
export const DELIVERY_LIST_LIMIT = 100;

export interface WebhookEndpointsOptions {
  /** Plain http:// endpoints too; development and tests only (WEBHOOK_ALLOW_HTTP, refused in production). */
  allowInsecureUrls: boolean;
}

export interface WebhookEndpointsDeps {
  store: WebhookStore;
  crypto: Pick<CardCrypto, 'sealWebhookSecret'>;
  audit: AuditTrail;
  options: WebhookEndpointsOptions;
}

/** A view of an endpoint without its secret, which after creation nobody sees again. */
export type WebhookEndpointView = Omit<WebhookEndpointRecord, 'sealedSecret'>;

export interface CreatedEndpoint {
  endpoint: WebhookEndpointView;
  secret: Secret<string>;
}

function withoutSecret({ sealedSecret: _sealed, ...endpoint }: WebhookEndpointRecord): WebhookEndpointView {
  return endpoint;
}

function checkUrl(value: unknown, allowInsecure: boolean): string {
  const fail = (detail: string) => new VaultError('invalid_field', detail, { pointer: '/url' });
  if (typeof value !== 'string' || value.length > MAX_WEBHOOK_URL_LENGTH) throw fail(`url is at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw fail('url is not an absolute URL');
  }
  if (url.protocol !== 'https:' && !(allowInsecure && url.protocol === 'http:')) {
    throw fail(allowInsecure ? 'url is an https:// or http:// URL' : 'url is an https:// URL');
  }
  // The deliverer would send them on every request, and they would show in every listing.
  if (url.username !== '' || url.password !== '') throw fail('url may not carry credentials');
  if (!allowInsecure && isInternalHost(url.hostname)) throw fail('url may not name a loopback, private or link-local address');
  // URLs are stored, returned and their origin audited: one that could hold a card number is refused.
  if (mayHoldCardNumber(decodeURIComponentSafe(url.href))) throw fail('url may not hold a run of twelve digits');
  if (url.href.length > MAX_WEBHOOK_URL_LENGTH) throw fail(`url is at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  return url.href;
}

/**
 * Every well-formed %XX escape decoded, whatever else the text holds: decodeURIComponent gives up on the whole
 * string at one bad escape ('%ZZ'), which would let the digits behind the other escapes through unread.
 */
function decodeURIComponentSafe(text: string): string {
  return text.replace(/%[0-9A-Fa-f]{2}/g, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)));
}

function checkEvents(events: readonly unknown[] | undefined): WebhookEventType[] {
  if (events === undefined) return [...WEBHOOK_EVENT_TYPES];
  if (events.length === 0) throw new VaultError('invalid_field', 'events lists at least one event type', { pointer: '/events' });
  const known = WEBHOOK_EVENT_TYPES as readonly unknown[];
  events.forEach((event, i) => {
    if (!known.includes(event)) throw new VaultError('invalid_field', `an event is one of ${WEBHOOK_EVENT_TYPES.join(', ')}`, { pointer: `/events/${i}` });
    if (events.indexOf(event) !== i) throw new VaultError('invalid_field', 'an event type is listed twice', { pointer: `/events/${i}` });
  });
  return events as WebhookEventType[];
}

/** `whsec_` and 32 random bytes, base64url: 256 bits, as long as the HMAC-SHA256 key it is used as. */
function newSecret(): Secret<string> {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(32));
  return new Secret(`whsec_${Buffer.from(bytes).toString('base64url')}`, 'webhook secret');
}

export class WebhookEndpoints {
  constructor(private readonly deps: WebhookEndpointsDeps) {}

  async createEndpoint(principal: Principal, ctx: RequestContext, request: { url: unknown; events?: readonly unknown[] }): Promise<CreatedEndpoint> {
    return audited(this.deps.audit, principal, ctx, 'webhook.endpoint.create', null, async () => {
      authorize(principal, 'webhooks');
      const url = checkUrl(request.url, this.deps.options.allowInsecureUrls);
      const events = checkEvents(request.events);
      const id = globalThis.crypto.randomUUID();
      const tenantId = principal.tenant.id;
      const secret = newSecret();
      const sealedSecret = await this.deps.crypto.sealWebhookSecret(tenantId, id, secret);
      const endpoint = await this.deps.store.insertEndpoint({ id, tenantId, url, events, sealedSecret });
      // The origin only: a path or query can carry the merchant's own routing secrets.
      return { result: { endpoint: withoutSecret(endpoint), secret }, details: { endpoint_id: id, origin: new URL(url).origin, events } };
    });
  }

  /** Audited like every other request a key makes: the list names where card events go. */
  async listEndpoints(principal: Principal, ctx: RequestContext): Promise<WebhookEndpointView[]> {
    return audited(this.deps.audit, principal, ctx, 'webhook.endpoints.read', null, async () => {
      authorize(principal, 'webhooks');
      const endpoints = (await this.deps.store.listEndpoints(principal.tenant.id)).map(withoutSecret);
      return { result: endpoints, details: { count: endpoints.length } };
    });
  }

  /** Disabling twice is fine; an unknown id and another tenant's answer not_found alike. */
  async disableEndpoint(principal: Principal, ctx: RequestContext, id: string): Promise<void> {
    return audited(this.deps.audit, principal, ctx, 'webhook.endpoint.disable', null, async () => {
      authorize(principal, 'webhooks');
      if (!(await this.deps.store.disableEndpoint(principal.tenant.id, id))) throw new VaultError('not_found');
      return { result: undefined, details: { endpoint_id: id } };
    });
  }

  async listDeliveries(principal: Principal, ctx: RequestContext, state: DeliveryState | undefined): Promise<WebhookDelivery[]> {
    return audited(this.deps.audit, principal, ctx, 'webhook.deliveries.read', null, async () => {
      authorize(principal, 'webhooks');
      const deliveries = await this.deps.store.listDeliveries(principal.tenant.id, state, DELIVERY_LIST_LIMIT);
      return { result: deliveries, details: { state: state ?? null, count: deliveries.length } };
    });
  }

  /** The event id is kept, so a receiver that did get an earlier attempt can tell it is the same event. */
  async redriveDelivery(principal: Principal, ctx: RequestContext, id: string): Promise<WebhookDelivery> {
    return audited(this.deps.audit, principal, ctx, 'webhook.redrive', null, async () => {
      authorize(principal, 'webhooks');
      const tenantId = principal.tenant.id;
      const redriven = await this.deps.store.redriveDelivery(tenantId, id);
      if (!redriven) {
        if (!(await this.deps.store.findDelivery(tenantId, id))) throw new VaultError('not_found');
        throw new VaultError('invalid_request', 'only a dead delivery to an enabled endpoint can be re-driven');
      }
      return { result: redriven, details: { delivery_id: redriven.id, event_id: redriven.eventId, endpoint_id: redriven.endpointId } };
    });
  }

  async redriveDead(principal: Principal, ctx: RequestContext): Promise<number> {
    return audited(this.deps.audit, principal, ctx, 'webhook.redrive', null, async () => {
      authorize(principal, 'webhooks');
      const count = await this.deps.store.redriveDead(principal.tenant.id);
      return { result: count, details: { scope: 'all_dead', count } };
    });
  }
}
