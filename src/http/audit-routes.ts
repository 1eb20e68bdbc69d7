// /v1/audit (checkpoint, proofs, NDJSON export) and the public JWKS that verifies checkpoints.
import { Router, type Response } from 'express';
import type { AuditService } from '../audit/audit-service';
import { VaultError } from '../errors';
import { contextOf, principalOf } from './authenticate';
import type { Allow } from './authorize';
import { methodNotAllowed } from './problem';

function integer(value: unknown, name: string): number {
  // At most 11 digits: values are recorded in the audit trail, and 12 digits could be a card number.
  if (typeof value !== 'string' || !/^[0-9]{1,11}$/.test(value)) {
    throw new VaultError('invalid_field', `${name} must be a non-negative integer`, { pointer: `/${name}` });
  }
  return Number(value);
}

/** Whether a full-date names a day of the calendar: Date rolls 2026-02-30 over to March 2 rather than refuse it. */
function isCalendarDay(fullDate: string): boolean {
  const [year, month, day] = fullDate.split('-').map(Number) as [number, number, number];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0 to 99 as 1900 to 1999
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function time(value: unknown, name: string): Date | null {
  if (value === undefined) return null;
  const parsed =
    typeof value === 'string' && /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(value) && isCalendarDay(value.slice(0, 10))
      ? new Date(value)
      : null;
  if (!parsed || Number.isNaN(parsed.getTime())) {
    throw new VaultError('invalid_field', `${name} must be an RFC 3339 date-time or date`, { pointer: `/${name}` });
  }
  return parsed;
}

/** Resolves true once the response takes more data, false if the client has gone. */
function drained(res: Response): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onDrain = () => {
      res.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('drain', onDrain);
      resolve(false);
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

export function jwksRoute(keySet: { jwks(): Promise<{ keys: Record<string, unknown>[] }> }): Router {
  const router = Router();
  router.get('/.well-known/jwks.json', async (_req, res) => {
    const jwks = await keySet.jwks();
    // Only a successful answer may be cached; an error must not stick for five minutes.
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.json(jwks);
  });
  router.all('/.well-known/jwks.json', methodNotAllowed('GET, HEAD'));
  return router;
}

export function auditRoutes(audit: AuditService, allow: Allow): Router {
  const router = Router();

  router.get('/checkpoint', allow('audit.read', 'audit.read'), async (req, res) => {
    res.json(await audit.latestCheckpoint(principalOf(res), contextOf(req, res)));
  });

  router.get('/proofs/inclusion', allow('audit.read', 'audit.read'), async (req, res) => {
    const seq = integer(req.query.seq, 'seq');
    const treeSize = integer(req.query.tree_size, 'tree_size');
    res.json(await audit.inclusion(principalOf(res), contextOf(req, res), seq, treeSize));
  });

  router.get('/proofs/consistency', allow('audit.read', 'audit.read'), async (req, res) => {
    const first = integer(req.query.first, 'first');
    const second = integer(req.query.second, 'second');
    res.json(await audit.consistency(principalOf(res), contextOf(req, res), first, second));
  });

  // Express answers HEAD with a GET route's handler, which streamed a whole export to nobody and recorded an
  // audit.export for it. HEAD says what a GET would before its first line, after the same checks, and reads no log.
  router.head('/events', allow('audit.read', 'audit.export'), (req, res) => {
    time(req.query.from, 'from');
    time(req.query.to, 'to');
    res.status(200).type('application/x-ndjson').end();
  });

  router.get('/events', allow('audit.read', 'audit.export'), async (req, res) => {
    const lines = await audit.export(principalOf(res), contextOf(req, res), time(req.query.from, 'from'), time(req.query.to, 'to'));
    res.status(200).type('application/x-ndjson');
    for await (const line of lines) {
      // Respect back-pressure: a slow auditor must not make the vault buffer the whole log. One who hangs up
      // ends the export (leaving the loop closes the reader), instead of leaving it waiting for a drain forever.
      if (!res.write(line) && !(await drained(res))) return;
    }
    res.end();
  });

  router.all('/checkpoint', methodNotAllowed('GET, HEAD'));
  router.all('/proofs/inclusion', methodNotAllowed('GET, HEAD'));
  router.all('/proofs/consistency', methodNotAllowed('GET, HEAD'));
  router.all('/events', methodNotAllowed('GET, HEAD'));
  return router;
}
