// /v1/account-updater (settings, runs) and the per-card updater routes under /v1/tokens/{token}.
import { Router } from 'express';
import { CARD_LIKE } from '../domain/pan';
import { VaultError } from '../errors';
import type { AccountUpdater } from '../updater/account-updater';
import type { CardUpdate, UpdaterRun, UpdaterSettings } from '../updater/model';
import { contextOf, principalOf } from './authenticate';
import type { Allow } from './authorize';
import { methodNotAllowed } from './problem';
import { present, tokenParam } from './tokens';
import { validator } from './validate';

/** Our id at a network goes into every inquiry record: the formats' alphabet, 1–15 characters. */
const MERCHANT_ID = { type: 'object', additionalProperties: false, required: ['merchant_id'], properties: { merchant_id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,15}$' } } } as const;

export const UPDATER_SETTINGS_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['networks'],
  properties: {
    enabled: { type: 'boolean' },
    networks: { type: 'object', additionalProperties: false, minProperties: 1, properties: { visa: MERCHANT_ID, mastercard: MERCHANT_ID } },
    cadence_days: { type: 'integer', minimum: 1, maximum: 180 },
  },
} as const;

/** A consent reference names the merchant's own record; it may not hold a digit run that could be a card number. */
export const ENROLLMENT_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['enrolled'],
  properties: {
    enrolled: { type: 'boolean' },
    consent_reference: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x21-\\x7e]*$', not: { pattern: CARD_LIKE.source } },
  },
} as const;

export const RUN_REQUEST = {
  type: 'object',
  additionalProperties: false,
  properties: { scope: { type: 'string', enum: ['due', 'all'] } },
} as const;

const parseSettings = validator<{ enabled?: boolean; networks: UpdaterSettings['networks']; cadence_days?: number }>(UPDATER_SETTINGS_REQUEST);
const parseEnrollment = validator<{ enrolled: boolean; consent_reference?: string }>(ENROLLMENT_REQUEST);
const parseRun = validator<{ scope?: 'due' | 'all' }>(RUN_REQUEST);

/** How often a card is inquired when the tenant does not say. */
const DEFAULT_CADENCE_DAYS = 30;

function presentSettings(s: UpdaterSettings) {
  return { enabled: s.enabled, networks: s.networks, cadence_days: s.cadenceDays, updated_at: s.updatedAt.toISOString() };
}

export function presentRun(run: UpdaterRun) {
  return {
    id: run.id,
    state: run.state,
    trigger: run.trigger,
    scope: run.scope,
    progress: { done: run.done, total: run.total },
    counts: run.counts,
    errors: run.errors,
    failure: run.failure,
    created_at: run.createdAt.toISOString(),
    started_at: run.startedAt?.toISOString() ?? null,
    finished_at: run.finishedAt?.toISOString() ?? null,
  };
}

function presentUpdate(u: CardUpdate) {
  return { version: u.version, token: u.token, event: u.event, network: u.network, network_code: u.networkCode, source: u.source, run_id: u.runId, changes: u.changes, created_at: u.createdAt.toISOString() };
}

export function updaterRoutes(updater: AccountUpdater, allow: Allow): Router {
  const router = Router();

  router.get('/settings', allow('updater', 'updater.settings.read'), async (req, res) => {
    const settings = await updater.settings(principalOf(res), contextOf(req, res));
    if (!settings) throw new VaultError('updater_not_configured', 'PUT /v1/account-updater/settings first');
    res.json(presentSettings(settings));
  });
  router.put('/settings', allow('updater', 'updater.settings.update'), async (req, res) => {
    const body = parseSettings(req.body);
    const settings = { enabled: body.enabled ?? true, networks: body.networks, cadenceDays: body.cadence_days ?? DEFAULT_CADENCE_DAYS };
    res.json(presentSettings(await updater.configure(principalOf(res), contextOf(req, res), settings)));
  });
  router.post('/runs', allow('updater', 'updater.run.start'), async (req, res) => {
    const body = parseRun(req.body ?? {});
    const { run, created } = await updater.startRun(principalOf(res), contextOf(req, res), body.scope ?? 'due');
    res.status(created ? 202 : 200).location(`/v1/account-updater/runs/${run.id}`).json(presentRun(run));
  });
  router.get('/runs', allow('updater', 'updater.runs.read'), async (req, res) => {
    res.json({ runs: (await updater.runs(principalOf(res), contextOf(req, res), 50)).map(presentRun) });
  });
  router.get('/runs/:id', allow('updater', 'updater.runs.read'), async (req, res) => {
    res.json(presentRun(await updater.run(principalOf(res), contextOf(req, res), String(req.params.id))));
  });

  router.all('/settings', methodNotAllowed('GET, PUT'));
  router.all('/runs', methodNotAllowed('GET, POST'));
  router.all('/runs/:id', methodNotAllowed('GET'));
  return router;
}

/** Mounted on /v1/tokens beside tokenRoutes. */
export function cardUpdaterRoutes(updater: AccountUpdater, allow: Allow): Router {
  const router = Router();

  // Enrolment and its withdrawal alike: which one was refused is in the body, not read for a key without the action.
  router.put('/:token/account-updater', allow('updater', 'updater.enroll'), async (req, res) => {
    const token = tokenParam(req.params.token);
    const body = parseEnrollment(req.body);
    res.json(present(await updater.enroll(principalOf(res), contextOf(req, res), token, body.enrolled, body.consent_reference ?? null)));
  });
  router.post('/:token/refresh', allow('updater', 'card.refresh'), async (req, res) => {
    const result = await updater.refresh(principalOf(res), contextOf(req, res), tokenParam(req.params.token));
    res.json({ outcome: result.outcome, network: result.network, network_code: result.networkCode, card: present(result.card), updates: result.updates.map(presentUpdate) });
  });
  router.get('/:token/updates', allow('read', 'card.updates.read'), async (req, res) => {
    const { card, updates } = await updater.history(principalOf(res), contextOf(req, res), tokenParam(req.params.token));
    res.json({ token: card.token, version: card.version, updates: updates.map(presentUpdate) });
  });

  router.all('/:token/account-updater', methodNotAllowed('PUT'));
  router.all('/:token/refresh', methodNotAllowed('POST'));
  router.all('/:token/updates', methodNotAllowed('GET'));
  return router;
}
