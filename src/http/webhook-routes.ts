// /v1/webhook-endpoints and /v1/webhook-deliveries: parse, run the use case, present; the secret is shown once.
import { Router } from 'express';
import { VaultError } from '../errors';
import { DELIVERY_STATES, type DeliveryState, type WebhookDelivery } from '../updater/webhooks/ports';
import { MAX_WEBHOOK_URL_LENGTH, type WebhookEndpoints, type WebhookEndpointView } from '../updater/webhooks/webhook-endpoints';
import { contextOf, principalOf } from './authenticate';
import type { Allow } from './authorize';
import { methodNotAllowed } from './problem';
import { validator } from './validate';

/** Shape only; webhook-endpoints.ts judges the URL and the event names, each with its own pointer. */
export const WEBHOOK_ENDPOINT_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: { type: 'string', maxLength: MAX_WEBHOOK_URL_LENGTH },
    events: { type: 'array', minItems: 1, maxItems: 16, items: { type: 'string', maxLength: 64 } },
  },
} as const;

/** The re-drive calls take no parameters; POST bodies are JSON here, so they take an empty object. */
export const REDRIVE_REQUEST = { type: 'object', additionalProperties: false, properties: {} } as const;

interface WebhookEndpointBody {
  url: string;
  events?: string[];
}

const parseRequest = validator<WebhookEndpointBody>(WEBHOOK_ENDPOINT_REQUEST);
const parseRedrive = validator<Record<string, never>>(REDRIVE_REQUEST);

function presentEndpoint(endpoint: WebhookEndpointView) {
  return { id: endpoint.id, url: endpoint.url, events: endpoint.events, created_at: endpoint.createdAt, disabled_at: endpoint.disabledAt };
}

function presentDelivery(d: WebhookDelivery) {
  return {
    id: d.id,
    event_id: d.eventId,
    event_type: d.eventType,
    endpoint_id: d.endpointId,
    state: d.state,
    attempts: d.attempts,
    next_attempt_at: d.nextAttemptAt,
    last_status: d.lastStatus,
    last_error: d.lastError,
    created_at: d.createdAt,
    delivered_at: d.deliveredAt,
    dead_at: d.deadAt,
    payload: d.payload,
  };
}

function stateParam(value: unknown): DeliveryState | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (DELIVERY_STATES as readonly string[]).includes(value)) return value as DeliveryState;
  throw new VaultError('invalid_field', `state is one of ${DELIVERY_STATES.join(', ')}`, { pointer: '/state' });
}

/** The store answers a malformed id as it answers an unknown one: not_found. */
const idParam = (value: unknown): string => (typeof value === 'string' ? value : '');

export function webhookEndpointRoutes(webhooks: WebhookEndpoints, allow: Allow): Router {
  const router = Router();

  router.post('/', allow('webhooks', 'webhook.endpoint.create'), async (req, res) => {
    const body = parseRequest(req.body);
    const created = await webhooks.createEndpoint(principalOf(res), contextOf(req, res), { url: body.url, events: body.events });
    const { id, url, events, created_at } = presentEndpoint(created.endpoint);
    // The only time the secret leaves the vault; it is sealed at rest and never listed.
    res.status(201).json({ id, url, events, secret: created.secret.reveal(), created_at });
  });

  router.get('/', allow('webhooks', 'webhook.endpoints.read'), async (req, res) => {
    res.json({ data: (await webhooks.listEndpoints(principalOf(res), contextOf(req, res))).map(presentEndpoint) });
  });

  router.delete('/:id', allow('webhooks', 'webhook.endpoint.disable'), async (req, res) => {
    await webhooks.disableEndpoint(principalOf(res), contextOf(req, res), idParam(req.params.id));
    res.status(204).end();
  });

  router.all('/', methodNotAllowed('GET, POST'));
  router.all('/:id', methodNotAllowed('DELETE'));
  return router;
}

export function webhookDeliveryRoutes(webhooks: WebhookEndpoints, allow: Allow): Router {
  const router = Router();

  router.get('/', allow('webhooks', 'webhook.deliveries.read'), async (req, res) => {
    const deliveries = await webhooks.listDeliveries(principalOf(res), contextOf(req, res), stateParam(req.query.state));
    res.json({ data: deliveries.map(presentDelivery) });
  });

  router.post('/redrive', allow('webhooks', 'webhook.redrive'), async (req, res) => {
    parseRedrive(req.body);
    res.json({ redriven: await webhooks.redriveDead(principalOf(res), contextOf(req, res)) });
  });

  router.post('/:id/redrive', allow('webhooks', 'webhook.redrive'), async (req, res) => {
    parseRedrive(req.body);
    res.json(presentDelivery(await webhooks.redriveDelivery(principalOf(res), contextOf(req, res), idParam(req.params.id))));
  });

  router.all('/', methodNotAllowed('GET, HEAD'));
  router.all('/redrive', methodNotAllowed('POST'));
  router.all('/:id/redrive', methodNotAllowed('POST'));
  return router;
}
