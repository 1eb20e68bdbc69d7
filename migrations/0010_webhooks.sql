-- Merchant webhooks: endpoints with a sealed signing secret, and the transactional outbox of events to deliver.
CREATE TABLE webhook_endpoints (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  url text NOT NULL CHECK (length(url) <= 2048),
  events text[] NOT NULL CHECK (cardinality(events) >= 1),
  -- The HMAC secret, AES-256-GCM under a tenant data key, bound to tenant and endpoint id.
  data_key_id uuid NOT NULL REFERENCES data_keys (id),
  iv bytea NOT NULL CHECK (length(iv) = 12),
  tag bytea NOT NULL CHECK (length(tag) = 16),
  secret_ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id) WHERE disabled_at IS NULL;

-- Written in the same transaction as the card change it announces, one row per endpoint; the payload is masked.
CREATE TABLE webhook_outbox (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id),
  event_type text NOT NULL,
  payload jsonb NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- While a deliverer holds the row; another takes it over only after this passes.
  leased_until timestamptz,
  last_status integer,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  dead_at timestamptz,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_dead ON webhook_outbox (tenant_id, dead_at) WHERE state = 'dead';

GRANT SELECT, INSERT, UPDATE ON webhook_endpoints, webhook_outbox TO cardvault_runtime;
GRANT USAGE ON SEQUENCE webhook_outbox_id_seq TO cardvault_runtime;
