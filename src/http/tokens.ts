// /v1/tokens: parse the request, run the use case, present the result. Nothing else happens here.
import { Router, type RequestHandler, type Response } from 'express';
import { parseCvc } from '../domain/cvc';
import { luhnValid, mayHoldCardNumberAcrossPunctuation, Pan } from '../domain/pan';
import { DEFAULT_TOKEN_FORMAT, isTokenFormat, looksLikeToken } from '../domain/token';
import type { CardMetadata } from '../domain/card-metadata';
import type { Vault } from '../domain/vault';
import { VaultError } from '../errors';
import { contextOf, principalOf } from './authenticate';
import type { Allow } from './authorize';
import { methodNotAllowed } from './problem';
import { DETOKENIZE_REQUEST, TOKENIZE_REQUEST, UPDATE_REQUEST, type DetokenizeBody, type TokenizeBody, type UpdateBody } from './schemas';
import { validator } from './validate';

const parseTokenize = validator<TokenizeBody>(TOKENIZE_REQUEST);
const parseUpdate = validator<UpdateBody>(UPDATE_REQUEST);
const parseDetokenize = validator<DetokenizeBody>(DETOKENIZE_REQUEST);
const IDEMPOTENCY_KEY = /^[!-~]{1,255}$/;

export function present(card: CardMetadata) {
  return {
    token: card.token,
    format: card.format,
    fingerprint: card.fingerprint,
    status: card.status,
    card: { brand: card.brand, bin: card.bin, last4: card.last4, exp_month: card.expMonth, exp_year: card.expYear },
    cvc_held: card.cvcHeld ?? false,
    version: card.version,
    contact_cardholder: card.contactCardholder,
    account_updater: {
      enrolled: card.accountUpdater.enrolled,
      enrolled_at: card.accountUpdater.enrolledAt,
      consent_reference: card.accountUpdater.consentRef,
      last_inquired_at: card.accountUpdater.lastInquiredAt,
    },
    ...(card.mergedInto ? { merged_into: card.mergedInto } : {}),
    created_at: card.createdAt,
    updated_at: card.updatedAt,
  };
}

/**
 * The path's token, or undefined for anything that is not one. No numeric token passes Luhn; a value that does
 * may be a card number sent by mistake, and must go no further — not into a lookup, a log line or the audit trail.
 */
export function tokenOrUndefined(value: unknown): string | undefined {
  if (typeof value !== 'string' || !looksLikeToken(value)) return undefined;
  if (/^[0-9]+$/.test(value) && luhnValid(value)) return undefined;
  return value;
}

/** An unknown token, a malformed one and another tenant's all answer the same. */
export function tokenParam(value: unknown): string {
  const token = tokenOrUndefined(value);
  if (token === undefined) throw new VaultError('token_not_found');
  return token;
}

function parsePan(number: string): Pan {
  try {
    return Pan.parse(number);
  } catch (err) {
    if (err instanceof VaultError) throw new VaultError(err.code, err.detail, { pointer: '/card/number' });
    throw err;
  }
}

function idempotencyKey(res: Response, header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) throw new VaultError('invalid_idempotency_key', 'use 1–255 printable ASCII characters');
  // Echoed so a client can match answers to requests; not one that could be a card number (stored only as a digest).
  if (!mayHoldCardNumberAcrossPunctuation(header)) res.setHeader('Idempotency-Key', header);
  return header;
}

/** Called after the card is vaulted, before the answer: the hosted form's session records the token it produced. */
export type AfterTokenize = (res: Response, card: CardMetadata) => Promise<void>;

function tokenizeRequest(body: unknown) {
  const parsed = parseTokenize(body);
  const format = parsed.format ?? DEFAULT_TOKEN_FORMAT;
  if (!isTokenFormat(format)) throw new VaultError('unsupported_format', 'format must be bin6_last4, last4 or opaque', { pointer: '/format' });
  const pan = parsePan(parsed.card.number);
  const cvc = parsed.card.cvc === undefined ? null : parseCvc(parsed.card.cvc, pan.brand);
  return { format, card: { pan, expMonth: parsed.card.exp_month, expYear: parsed.card.exp_year, holderName: parsed.card.holder_name ?? null, cvc } };
}

/** POST /v1/tokens: 201 for a new card, 200 with the tenant's existing token (and its metadata) for a known one. */
function tokenizeHandler(vault: Vault): RequestHandler {
  return async (req, res) => {
    const { format, card } = tokenizeRequest(req.body);
    const key = idempotencyKey(res, req.get('Idempotency-Key'));
    const outcome = await vault.tokenize(principalOf(res), contextOf(req, res), card, format, key);
    res.status(outcome.created ? 201 : 200).json(present(outcome.card));
  };
}

/**
 * POST /hosted/tokens, for whoever holds the session: the shopper's browser, or anyone who read the page. It must
 * not learn whether the tenant already held the card, nor anything stored about it: always 201, with the token and
 * what was typed (brand, last 4, the expiry sent), never the stored metadata. An Idempotency-Key is ignored: the
 * session is single-use, and the tenant's key namespace is its backend's, not a shopper's to claim.
 */
export function hostedTokenizeHandler(vault: Vault, afterTokenize: AfterTokenize): RequestHandler {
  return async (req, res) => {
    const { format, card } = tokenizeRequest(req.body);
    const outcome = await vault.tokenize(principalOf(res), contextOf(req, res), card, format);
    await afterTokenize(res, outcome.card);
    res.status(201).json({
      token: outcome.card.token,
      format: outcome.card.format,
      card: { brand: card.pan.brand, last4: card.pan.last4, exp_month: card.expMonth, exp_year: card.expYear },
      // Whether this request's CVC is held: a CVC held for a known card from before is none of its business.
      cvc_held: card.cvc !== null && (outcome.card.cvcHeld ?? false),
    });
  };
}

/** Each route counts against its own action's budget (in `allow`), so a burst of reads leaves detokenize untouched. */
export function tokenRoutes(vault: Vault, allow: Allow): Router {
  const router = Router();

  router.post('/', allow('tokenize', 'card.tokenize'), tokenizeHandler(vault));

  router.get('/:token', allow('read', 'card.read'), async (req, res) => {
    res.json(present(await vault.getCard(principalOf(res), contextOf(req, res), tokenParam(req.params.token))));
  });

  router.patch('/:token', allow('update', 'card.update'), async (req, res) => {
    const token = tokenParam(req.params.token);
    const { card } = parseUpdate(req.body);
    const changes = { expMonth: card.exp_month, expYear: card.exp_year, holderName: card.holder_name };
    res.json(present(await vault.updateCard(principalOf(res), contextOf(req, res), token, changes)));
  });

  router.delete('/:token', allow('delete', 'card.delete'), async (req, res) => {
    await vault.deleteCard(principalOf(res), contextOf(req, res), tokenParam(req.params.token));
    res.status(204).end();
  });

  router.post('/:token/detokenize', allow('detokenize', 'card.detokenize'), async (req, res) => {
    const token = tokenParam(req.params.token);
    const { purpose } = parseDetokenize(req.body);
    res.json(await vault.detokenize(principalOf(res), contextOf(req, res), token, purpose));
  });

  router.all('/', methodNotAllowed('POST'));
  router.all('/:token', methodNotAllowed('GET, PATCH, DELETE'));
  router.all('/:token/detokenize', methodNotAllowed('POST'));
  return router;
}
