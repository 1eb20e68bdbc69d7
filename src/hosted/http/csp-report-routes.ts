// POST /hosted/csp-reports: browsers report here whatever the hosted form's Content-Security-Policy blocked. An
// injected script or style, or a page framing the form from an origin its session does not name, becomes a
// metric to alert on and a log line (PCI DSS 11.6.1: unauthorized changes to the payment page are detected).
import express, { Router, type RequestHandler } from 'express';
import { VaultError } from '../../errors';
import type { Logger } from '../../log';
import { methodNotAllowed } from '../../http/problem';

export const CSP_REPORT_PATH = '/hosted/csp-reports';

/** A report is a few hundred bytes; anything far larger is not a browser's. */
const MAX_REPORT_BYTES = 8 * 1024;

/** Directives a report may name; anything else is counted as `other`, so a metric label is never a sender's text. */
const CSP_DIRECTIVES = [
  'default-src', 'script-src', 'script-src-elem', 'script-src-attr', 'style-src', 'style-src-elem', 'style-src-attr',
  'connect-src', 'img-src', 'font-src', 'media-src', 'object-src', 'frame-src', 'child-src', 'worker-src',
  'manifest-src', 'form-action', 'base-uri', 'frame-ancestors',
] as const;
type CspDirective = (typeof CSP_DIRECTIVES)[number] | 'other';

/** What is kept of a report: never its document URL (the form's carries its session) or its script sample. */
export interface CspViolation {
  directive: CspDirective;
  /** The blocked resource's origin, or a CSP keyword (`inline`, `eval`, `data`, ...); `other` when it is neither. */
  blocked: string;
  disposition: 'enforce' | 'report';
}

const KEYWORDS = new Set(['inline', 'eval', 'wasm-eval', 'data', 'blob', 'self', 'trusted-types-policy', 'trusted-types-sink']);

function directiveOf(report: Record<string, unknown>): CspDirective {
  const named = report['effective-directive'] ?? report['violated-directive'];
  const first = typeof named === 'string' ? named.trim().split(/\s+/)[0]!.toLowerCase() : '';
  return (CSP_DIRECTIVES as readonly string[]).includes(first) ? (first as CspDirective) : 'other';
}

function blockedOf(report: Record<string, unknown>): string {
  const blocked = report['blocked-uri'];
  if (typeof blocked !== 'string' || blocked === '') return 'other';
  const keyword = blocked.toLowerCase().replace(/:$/, '');
  if (KEYWORDS.has(keyword)) return keyword;
  try {
    const url = new URL(blocked);
    // The origin only: a path or query could carry anything, a card number included.
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : 'other';
  } catch {
    return 'other';
  }
}

/** The violation in a `report-uri` body (`{"csp-report": {...}}`); undefined when the body is not one. */
function parseCspReport(body: unknown): CspViolation | undefined {
  const report = (body as { 'csp-report'?: unknown } | null)?.['csp-report'];
  if (typeof report !== 'object' || report === null || Array.isArray(report)) return undefined;
  const fields = report as Record<string, unknown>;
  return { directive: directiveOf(fields), blocked: blockedOf(fields), disposition: fields.disposition === 'report' ? 'report' : 'enforce' };
}

export function cspReportRoutes(deps: {
  log: Logger;
  /** Told of each violation reported (metrics). */
  onViolation?: (violation: CspViolation) => void;
  /** Reports one source address may send per minute (rate-limit.ts); absent, unlimited. */
  limit?: RequestHandler;
}): Router {
  const router = Router();
  const parse = express.json({ limit: MAX_REPORT_BYTES, strict: true, type: 'application/csp-report' });
  router.post(
    '/',
    deps.limit ?? ((_req, _res, next) => next()),
    (req, _res, next) => {
      if (!req.is('application/csp-report')) throw new VaultError('unsupported_media_type', 'a CSP report is application/csp-report');
      next();
    },
    parse,
    (req, res) => {
      const violation = parseCspReport(req.body);
      if (!violation) throw new VaultError('invalid_request', 'the body is not a CSP violation report');
      deps.log.warn({ csp: violation }, 'hosted form: Content-Security-Policy violation reported');
      deps.onViolation?.(violation);
      res.status(204).end();
    },
  );
  router.all('/', methodNotAllowed('POST'));
  return router;
}
