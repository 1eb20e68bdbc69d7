-- The account updater: per-tenant settings, runs and their batches, one row per inquired card, the per-tenant
-- worker lock with its fencing token, and the versioned history of every change applied to a card.
CREATE TABLE updater_settings (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  enabled boolean NOT NULL,
  -- {"visa": {"merchant_id": "..."}, "mastercard": {"merchant_id": "..."}}: the networks inquired, and our id at each.
  networks jsonb NOT NULL,
  -- Every enrolled card is inquired at least this often; 180 days is the most the networks' rules allow.
  cadence_days integer NOT NULL CHECK (cadence_days BETWEEN 1 AND 180),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE updater_runs (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  state text NOT NULL CHECK (state IN ('pending', 'sending', 'awaiting_response', 'completed', 'failed')),
  trigger text NOT NULL CHECK (trigger IN ('schedule', 'api', 'cli')),
  scope text NOT NULL CHECK (scope IN ('due', 'all')),
  -- An API key id, `cli` or `schedule`.
  requested_by text NOT NULL,
  -- Progress: cards inquired, and cards whose answer has been applied (or found missing).
  total integer NOT NULL DEFAULT 0,
  done integer NOT NULL DEFAULT 0,
  -- Outcome name → number of cards; parse errors as {batch, line, code}, never a value from the file.
  counts jsonb NOT NULL DEFAULT '{}',
  errors jsonb NOT NULL DEFAULT '[]',
  failure text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- At most one unfinished run per tenant, whoever asks for it and however many workers race.
CREATE UNIQUE INDEX updater_runs_one_open ON updater_runs (tenant_id) WHERE state NOT IN ('completed', 'failed');
CREATE INDEX updater_runs_tenant_created ON updater_runs (tenant_id, created_at DESC);

CREATE TABLE updater_batches (
  -- The batch id in the exchanged file names and headers.
  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,20}$'),
  run_id uuid NOT NULL REFERENCES updater_runs (id),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  network text NOT NULL CHECK (network IN ('visa', 'mastercard')),
  state text NOT NULL CHECK (state IN ('created', 'sent', 'applied')),
  total integer NOT NULL,
  sent_at timestamptz,
  applied_at timestamptz
);
CREATE INDEX updater_batches_run ON updater_batches (run_id);

-- One card in one batch: the reference in the file, never card data. `applied_at` makes applying exactly-once.
CREATE TABLE updater_inquiries (
  batch_id text NOT NULL REFERENCES updater_batches (id),
  ref text NOT NULL,
  tenant_id uuid NOT NULL,
  token text NOT NULL,
  outcome text,
  network_code text,
  applied_at timestamptz,
  PRIMARY KEY (batch_id, ref)
);

-- One worker per tenant at a time. `fence` grows with every takeover; each write a worker makes checks it
-- still holds the fence it was given, so a worker that stalled past its lease cannot write after its successor.
CREATE TABLE updater_locks (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  holder text NOT NULL,
  fence bigint NOT NULL,
  expires_at timestamptz NOT NULL
);

-- Every change the updater made to a card, by version, masked: BIN and last 4, expiry, status, never a number.
CREATE TABLE card_updates (
  id bigserial PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  token text NOT NULL,
  version integer NOT NULL,
  event text NOT NULL CHECK (event IN ('card.updated', 'card.expiry_updated', 'card.closed', 'card.contact_cardholder', 'card.merged', 'card.updater_opted_out')),
  network text NOT NULL CHECK (network IN ('visa', 'mastercard')),
  network_code text NOT NULL,
  source text NOT NULL CHECK (source IN ('batch', 'real_time')),
  run_id uuid REFERENCES updater_runs (id),
  batch_id text,
  ref text,
  changes jsonb NOT NULL,
  -- Set once the change's audit event is committed; a sweep audits any change a crash left unaudited.
  audited_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, token, version)
);
-- An answer changes a card at most once, however often its file is ingested.
CREATE UNIQUE INDEX card_updates_answer ON card_updates (batch_id, ref, token) WHERE batch_id IS NOT NULL;
CREATE INDEX card_updates_unaudited ON card_updates (id) WHERE audited_at IS NULL;

GRANT SELECT, INSERT, UPDATE ON updater_settings, updater_runs, updater_batches, updater_inquiries, updater_locks, card_updates
  TO cardvault_runtime;
GRANT USAGE ON SEQUENCE card_updates_id_seq TO cardvault_runtime;
