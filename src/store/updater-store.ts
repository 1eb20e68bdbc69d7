// The account updater's tables: settings, runs, batches, inquiries, the fenced per-tenant lock, and card history.
import type { Parity } from '../domain/fingerprints';
import type { CardRecord } from '../domain/ports';
import { CARD_COLUMNS, FINGERPRINT_COLUMN, toCardRecord, type CardRow } from './card-store';
import type { Db, Queryable } from './db';
import type {
  CardUpdate,
  NetworkName,
  NewCardUpdate,
  RunScope,
  RunState,
  RunTrigger,
  UpdaterRun,
  UpdaterSettings,
} from '../updater/model';

interface RunRow {
  id: string;
  tenant_id: string;
  state: RunState;
  trigger: RunTrigger;
  scope: RunScope;
  requested_by: string;
  total: number;
  done: number;
  counts: Record<string, number>;
  errors: UpdaterRun['errors'];
  failure: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

const RUN_COLUMNS = 'id, tenant_id, state, trigger, scope, requested_by, total, done, counts, errors, failure, created_at, started_at, finished_at';

function toRun(row: RunRow): UpdaterRun {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    state: row.state,
    trigger: row.trigger,
    scope: row.scope,
    requestedBy: row.requested_by,
    total: row.total,
    done: row.done,
    counts: row.counts,
    errors: row.errors,
    failure: row.failure,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

interface UpdateRow {
  id: string;
  tenant_id: string;
  token: string;
  version: number;
  event: CardUpdate['event'];
  network: NetworkName;
  network_code: string;
  source: CardUpdate['source'];
  run_id: string | null;
  changes: Record<string, unknown>;
  created_at: Date;
}

function toUpdate(row: UpdateRow): CardUpdate {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    token: row.token,
    version: row.version,
    event: row.event,
    network: row.network,
    networkCode: row.network_code,
    source: row.source,
    runId: row.run_id,
    changes: row.changes,
    createdAt: row.created_at,
  };
}

const OPEN = "state NOT IN ('completed', 'failed')";

export class PgUpdaterStore {
  constructor(readonly db: Db) {}

  async settings(tenantId: string): Promise<UpdaterSettings | undefined> {
    const rows = await this.db.query<{ enabled: boolean; networks: UpdaterSettings['networks']; cadence_days: number; updated_at: Date }>(
      'SELECT enabled, networks, cadence_days, updated_at FROM updater_settings WHERE tenant_id = $1',
      [tenantId],
    );
    const row = rows[0];
    return row && { enabled: row.enabled, networks: row.networks, cadenceDays: row.cadence_days, updatedAt: row.updated_at };
  }

  async putSettings(tenantId: string, s: Omit<UpdaterSettings, 'updatedAt'>): Promise<UpdaterSettings> {
    await this.db.query(
      `INSERT INTO updater_settings (tenant_id, enabled, networks, cadence_days) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id) DO UPDATE SET enabled = $2, networks = $3, cadence_days = $4, updated_at = now()`,
      [tenantId, s.enabled, JSON.stringify(s.networks), s.cadenceDays],
    );
    return (await this.settings(tenantId))!;
  }

  /** Consent is recorded once: enrolling again keeps the first time, and replaces the consent reference. */
  async enroll(tenantId: string, token: string, consentRef: string | null): Promise<CardRecord | undefined> {
    const rows = await this.db.query<CardRow>(
      `UPDATE cards SET updater_enrolled_at = COALESCE(updater_enrolled_at, now()), updater_consent_ref = $3, updated_at = now()
       WHERE tenant_id = $1 AND token = $2 AND status = 'active' RETURNING ${CARD_COLUMNS}`,
      [tenantId, token, consentRef],
    );
    return rows[0] && toCardRecord(rows[0]);
  }

  async unenroll(tenantId: string, token: string): Promise<CardRecord | undefined> {
    const rows = await this.db.query<CardRow>(
      `UPDATE cards SET updater_enrolled_at = NULL, updater_consent_ref = NULL, updated_at = now()
       WHERE tenant_id = $1 AND token = $2 AND status IN ('active', 'closed') RETURNING ${CARD_COLUMNS}`,
      [tenantId, token],
    );
    return rows[0] && toCardRecord(rows[0]);
  }

  /** One open run per tenant: when one is already open (whoever opened it), that run is returned instead. */
  async openRun(run: { id: string; tenantId: string; trigger: RunTrigger; scope: RunScope; requestedBy: string }): Promise<{ run: UpdaterRun; created: boolean }> {
    const inserted = await this.db.query<RunRow>(
      `INSERT INTO updater_runs (id, tenant_id, state, trigger, scope, requested_by) VALUES ($1, $2, 'pending', $3, $4, $5)
       ON CONFLICT (tenant_id) WHERE ${OPEN} DO NOTHING RETURNING ${RUN_COLUMNS}`,
      [run.id, run.tenantId, run.trigger, run.scope, run.requestedBy],
    );
    if (inserted[0]) return { run: toRun(inserted[0]), created: true };
    const open = await this.db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM updater_runs WHERE tenant_id = $1 AND ${OPEN}`, [run.tenantId]);
    // The open run finished between the two statements: try once more.
    return open[0] ? { run: toRun(open[0]), created: false } : this.openRun(run);
  }

  async findRun(tenantId: string, id: string): Promise<UpdaterRun | undefined> {
    const rows = await this.db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM updater_runs WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] && toRun(rows[0]);
  }

  async listRuns(tenantId: string, limit: number): Promise<UpdaterRun[]> {
    const rows = await this.db.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM updater_runs WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2`,
      [tenantId, limit],
    );
    return rows.map(toRun);
  }

  async openRuns(): Promise<UpdaterRun[]> {
    const rows = await this.db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM updater_runs WHERE ${OPEN} ORDER BY created_at`);
    return rows.map(toRun);
  }

  /**
   * Tenants with the updater on, no open run, and an enrolled card of a configured network not inquired within the
   * cadence: one query per tick. `coverage` pairs each network with a brand it covers (BRANDS_OF_NETWORK).
   */
  async dueTenants(coverage: ReadonlyArray<{ network: string; brand: string }>): Promise<string[]> {
    const rows = await this.db.query<{ tenant_id: string }>(
      `SELECT s.tenant_id FROM updater_settings s
       WHERE s.enabled
         AND NOT EXISTS (SELECT 1 FROM updater_runs r WHERE r.tenant_id = s.tenant_id AND r.${OPEN})
         AND EXISTS (
           SELECT 1 FROM cards c
           WHERE c.tenant_id = s.tenant_id AND c.status = 'active' AND c.updater_enrolled_at IS NOT NULL
             AND (c.last_inquired_at IS NULL OR c.last_inquired_at < now() - make_interval(days => s.cadence_days))
             AND c.brand IN (SELECT brand FROM unnest($1::text[], $2::text[]) AS n(network, brand) WHERE s.networks ? n.network))`,
      [coverage.map((c) => c.network), coverage.map((c) => c.brand)],
    );
    return rows.map((r) => r.tenant_id);
  }

  /**
   * The fenced lock: taken when free or expired (the fence grows), renewed by its holder. Undefined when another
   * worker holds it. Every write a worker makes then runs through `fenced`, which checks the fence is still its own.
   */
  async acquireLock(tenantId: string, holder: string, ttlSeconds: number): Promise<number | undefined> {
    const rows = await this.db.query<{ fence: string }>(
      `INSERT INTO updater_locks (tenant_id, holder, fence, expires_at) VALUES ($1, $2, 1, now() + make_interval(secs => $3))
       ON CONFLICT (tenant_id) DO UPDATE SET holder = EXCLUDED.holder, fence = updater_locks.fence + 1, expires_at = EXCLUDED.expires_at
         WHERE updater_locks.expires_at < now()
       RETURNING fence`,
      [tenantId, holder, ttlSeconds],
    );
    return rows[0] ? Number(rows[0].fence) : undefined;
  }

  async renewLock(tenantId: string, fence: number, ttlSeconds: number): Promise<boolean> {
    const rows = await this.db.query(
      'UPDATE updater_locks SET expires_at = now() + make_interval(secs => $3) WHERE tenant_id = $1 AND fence = $2 RETURNING fence',
      [tenantId, fence, ttlSeconds],
    );
    return rows.length === 1;
  }

  async releaseLock(tenantId: string, fence: number): Promise<void> {
    await this.db.query('UPDATE updater_locks SET expires_at = now() WHERE tenant_id = $1 AND fence = $2', [tenantId, fence]);
  }

  /** Runs `work` in a transaction that holds the lock row shared: a takeover waits for it, and a stale fence aborts it. */
  async fenced<T>(tenantId: string, fence: number, work: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query('SELECT 1 FROM updater_locks WHERE tenant_id = $1 AND fence = $2 FOR SHARE', [tenantId, fence]);
      if (rows.length === 0) throw new FencedOut();
      return work(tx);
    });
  }

  async historyOf(tenantId: string, token: string): Promise<CardUpdate[]> {
    const rows = await this.db.query<UpdateRow>(
      `SELECT id, tenant_id, token, version, event, network, network_code, source, run_id, changes, created_at
       FROM card_updates WHERE tenant_id = $1 AND token = $2 ORDER BY version`,
      [tenantId, token],
    );
    return rows.map(toUpdate);
  }

  async unauditedUpdates(limit: number): Promise<CardUpdate[]> {
    const rows = await this.db.query<UpdateRow>(
      `SELECT id, tenant_id, token, version, event, network, network_code, source, run_id, changes, created_at
       FROM card_updates WHERE audited_at IS NULL ORDER BY id LIMIT $1`,
      [limit],
    );
    return rows.map(toUpdate);
  }

  batch(batchId: string) {
    return findBatch(this.db, batchId);
  }

  /**
   * Which of these changes already have their audit event (a worker that crashed after auditing, before marking).
   * Bounded by time: an event is recorded after its change commits, so only events since the oldest change are read,
   * less a margin: the event's time is the vault's clock, the change's the database's, and the two may disagree.
   */
  async alreadyAudited(updates: readonly CardUpdate[]): Promise<Set<string>> {
    if (updates.length === 0) return new Set();
    const since = new Date(Math.min(...updates.map((u) => u.createdAt.getTime())) - CLOCK_SKEW_MARGIN_MS);
    const rows = await this.db.query<{ update_id: string }>(
      `SELECT event::jsonb -> 'details' ->> 'update_id' AS update_id FROM audit_events
       WHERE recorded_at >= $1 AND event::jsonb ->> 'action' = 'updater.card_update'
         AND event::jsonb -> 'details' ->> 'update_id' = ANY($2::text[])`,
      [since, updates.map((u) => String(u.id))],
    );
    return new Set(rows.map((r) => r.update_id));
  }

  async markAudited(ids: string[]): Promise<void> {
    if (ids.length > 0) await this.db.query('UPDATE card_updates SET audited_at = now() WHERE id = ANY($1::bigint[])', [ids]);
  }
}

/** How far the vault's and the database's clocks may disagree when an audit event is matched to its change. */
const CLOCK_SKEW_MARGIN_MS = 5 * 60_000;

/** The lock passed to another worker: stop, write nothing more. */
export class FencedOut extends Error {
  constructor() {
    super('the account-updater lock is held by another worker');
    this.name = 'FencedOut';
  }
}

/** Statements the run processor and the applier issue inside a fenced transaction. */
export const updaterTx = {
  async setRunState(tx: Queryable, runId: string, state: RunState, extra: { failure?: string } = {}): Promise<void> {
    await tx.query(
      `UPDATE updater_runs SET state = $2, failure = COALESCE($3, failure), updated_at = now(),
         started_at = CASE WHEN $2 <> 'pending' THEN COALESCE(started_at, now()) ELSE started_at END,
         finished_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() ELSE finished_at END
       WHERE id = $1`,
      [runId, state, extra.failure ?? null],
    );
  },

  /**
   * One batch of one network: inquiries straight from the cards table, each with the card's version (the answer is
   * about the card as it is now), each card marked inquired now.
   */
  async createBatch(
    tx: Queryable,
    b: { id: string; runId: string; tenantId: string; network: NetworkName; brands: string[]; scope: RunScope; cadenceDays: number },
  ): Promise<number> {
    await tx.query(`INSERT INTO updater_batches (id, run_id, tenant_id, network, state, total) VALUES ($1, $2, $3, $4, 'created', 0)`, [
      b.id, b.runId, b.tenantId, b.network,
    ]);
    const rows = await tx.query<{ token: string }>(
      `INSERT INTO updater_inquiries (batch_id, ref, tenant_id, token, card_version)
       SELECT $1, 'c' || row_number() OVER (ORDER BY id), tenant_id, token, version FROM cards
       WHERE tenant_id = $2 AND status = 'active' AND updater_enrolled_at IS NOT NULL AND brand = ANY($3)
         AND ($4 = 'all' OR last_inquired_at IS NULL OR last_inquired_at < now() - make_interval(days => $5))
       RETURNING token`,
      [b.id, b.tenantId, b.brands, b.scope, b.cadenceDays],
    );
    await tx.query('UPDATE updater_batches SET total = $2 WHERE id = $1', [b.id, rows.length]);
    await tx.query(
      `UPDATE cards SET last_inquired_at = now() FROM updater_inquiries i
       WHERE i.batch_id = $1 AND cards.tenant_id = i.tenant_id AND cards.token = i.token`,
      [b.id],
    );
    return rows.length;
  },

  async setRunTotal(tx: Queryable, runId: string): Promise<number> {
    const rows = await tx.query<{ total: number }>(
      'UPDATE updater_runs SET total = (SELECT COALESCE(sum(total), 0) FROM updater_batches WHERE run_id = $1) WHERE id = $1 RETURNING total',
      [runId],
    );
    return rows[0]!.total;
  },

  async markBatch(tx: Queryable, batchId: string, state: 'sent' | 'applied'): Promise<void> {
    await tx.query(
      `UPDATE updater_batches SET state = $2, sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
         applied_at = CASE WHEN $2 = 'applied' THEN now() ELSE applied_at END WHERE id = $1`,
      [batchId, state],
    );
  },

  /**
   * The still-unapplied inquiry for this reference, locked, with the card version it asked about (null for an
   * inquiry made before versions were kept); undefined when unknown or already applied.
   */
  async claimInquiry(tx: Queryable, batchId: string, ref: string): Promise<{ token: string; cardVersion: number | null } | undefined> {
    const rows = await tx.query<{ token: string; card_version: number | null }>(
      'SELECT token, card_version FROM updater_inquiries WHERE batch_id = $1 AND ref = $2 AND applied_at IS NULL FOR UPDATE',
      [batchId, ref],
    );
    return rows[0] && { token: rows[0].token, cardVersion: rows[0].card_version };
  },

  async knownRef(tx: Queryable, batchId: string, ref: string): Promise<boolean> {
    return (await tx.query('SELECT 1 FROM updater_inquiries WHERE batch_id = $1 AND ref = $2', [batchId, ref])).length === 1;
  },

  async completeInquiry(tx: Queryable, batchId: string, ref: string, outcome: string, networkCode: string): Promise<void> {
    await tx.query('UPDATE updater_inquiries SET outcome = $3, network_code = $4, applied_at = now() WHERE batch_id = $1 AND ref = $2', [
      batchId, ref, outcome, networkCode,
    ]);
  },

  /** Inquiries the response did not answer (or answered in a record we rejected): closed as no_response. */
  async closeUnanswered(tx: Queryable, batchId: string): Promise<number> {
    const rows = await tx.query(
      `UPDATE updater_inquiries SET outcome = 'no_response', network_code = '', applied_at = now()
       WHERE batch_id = $1 AND applied_at IS NULL RETURNING ref`,
      [batchId],
    );
    return rows.length;
  },

  async addProgress(tx: Queryable, runId: string, done: number, errors: UpdaterRun['errors']): Promise<void> {
    await tx.query('UPDATE updater_runs SET done = done + $2, errors = errors || $3::jsonb, updated_at = now() WHERE id = $1', [
      runId, done, JSON.stringify(errors),
    ]);
  },

  async finishRun(tx: Queryable, runId: string): Promise<void> {
    await tx.query(
      `UPDATE updater_runs SET counts = COALESCE((
         SELECT jsonb_object_agg(outcome, n) FROM (
           SELECT i.outcome, count(*) AS n FROM updater_inquiries i JOIN updater_batches b ON b.id = i.batch_id
           WHERE b.run_id = $1 GROUP BY i.outcome) c), '{}'::jsonb)
       WHERE id = $1`,
      [runId],
    );
    await updaterTx.setRunState(tx, runId, 'completed');
  },

  async lockCard(tx: Queryable, tenantId: string, token: string): Promise<CardRecord | undefined> {
    const rows = await tx.query<CardRow>(`SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND token = $2 FOR UPDATE`, [tenantId, token]);
    return rows[0] && toCardRecord(rows[0]);
  },

  async lockCardByFingerprint(tx: Queryable, tenantId: string, fingerprint: { parity: Parity; value: string }): Promise<CardRecord | undefined> {
    const rows = await tx.query<CardRow>(
      `SELECT ${CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND ${FINGERPRINT_COLUMN[fingerprint.parity]} = $2 AND status IN ('active', 'closed') FOR UPDATE`,
      [tenantId, fingerprint.value],
    );
    return rows[0] && toCardRecord(rows[0]);
  },

  /**
   * Writes the whole new state of a card and bumps its version; returns the new version. Both fingerprint columns
   * are written, a generation this instance does not write as null: a fingerprint of the card's old number must
   * not survive a number change (a rotation's backfill fills in what is missing).
   */
  async writeCard(tx: Queryable, card: CardRecord): Promise<number> {
    const s = card.sealed;
    const rows = await tx.query<{ version: number }>(
      `UPDATE cards SET status = $3, fingerprint = $4, brand = $5, bin = $6, last4 = $7, exp_month = $8, exp_year = $9,
         data_key_id = $10, iv = $11, tag = $12, ciphertext = $13, contact_cardholder = $14, updater_enrolled_at = $15,
         updater_consent_ref = $16, closed_at = $17, merged_into = $18, fingerprint_even = $19, version = version + 1, updated_at = now()
       WHERE tenant_id = $1 AND token = $2 RETURNING version`,
      [
        card.tenantId, card.token, card.status, s ? card.fingerprints.odd : null, card.brand, card.bin, card.last4, card.expMonth, card.expYear,
        s?.dataKeyId ?? null, s?.iv ?? null, s?.tag ?? null, s?.ciphertext ?? null, card.contactCardholder, card.updater.enrolledAt,
        card.updater.consentRef, card.closedAt, card.mergedInto, s ? card.fingerprints.even : null,
      ],
    );
    return rows[0]!.version;
  },

  async insertUpdate(tx: Queryable, u: NewCardUpdate): Promise<CardUpdate> {
    const rows = await tx.query<UpdateRow>(
      `INSERT INTO card_updates (tenant_id, token, version, event, network, network_code, source, run_id, batch_id, ref, changes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       RETURNING id, tenant_id, token, version, event, network, network_code, source, run_id, changes, created_at`,
      [u.tenantId, u.token, u.version, u.event, u.network, u.networkCode, u.source, u.runId, u.batchId, u.ref, JSON.stringify(u.changes)],
    );
    return toUpdate(rows[0]!);
  },
};

export async function batchesOf(q: Queryable, runId: string): Promise<Array<{ id: string; network: NetworkName; state: string; total: number }>> {
  return q.query('SELECT id, network, state, total FROM updater_batches WHERE run_id = $1 ORDER BY id', [runId]);
}

/** The cards of a batch with their references, for writing the inquiry file. */
export async function inquiredCards(q: Queryable, batchId: string): Promise<Array<{ ref: string; cardVersion: number | null; card: CardRecord }>> {
  const rows = await q.query<CardRow & { ref: string; card_version: number | null }>(
    `SELECT i.ref, i.card_version, ${CARD_COLUMNS.split(', ').map((c) => `c.${c}`).join(', ')}
     FROM updater_inquiries i JOIN cards c ON c.tenant_id = i.tenant_id AND c.token = i.token
     WHERE i.batch_id = $1 ORDER BY length(i.ref), i.ref`,
    [batchId],
  );
  return rows.map((row) => ({ ref: row.ref, cardVersion: row.card_version, card: toCardRecord(row) }));
}

/** Which batch (of any run) a response file's batch id names, with its tenant. */
export async function findBatch(q: Queryable, batchId: string): Promise<{ id: string; runId: string; tenantId: string; network: NetworkName; state: string } | undefined> {
  const rows = await q.query<{ id: string; run_id: string; tenant_id: string; network: NetworkName; state: string }>(
    'SELECT id, run_id, tenant_id, network, state FROM updater_batches WHERE id = $1',
    [batchId],
  );
  const row = rows[0];
  return row && { id: row.id, runId: row.run_id, tenantId: row.tenant_id, network: row.network, state: row.state };
}
