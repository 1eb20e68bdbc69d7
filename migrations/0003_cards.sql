-- Cards on file: the PAN and holder name only as AES-256-GCM ciphertext; BIN, last 4 and expiry in clear for display.
CREATE TABLE cards (
  id bigserial PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  token text NOT NULL,
  format text NOT NULL CHECK (format IN ('bin6_last4', 'last4', 'opaque')),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
  -- Keyed HMAC of the PAN (per-tenant key); null once the card is deleted so it can be vaulted again.
  fingerprint text,
  brand text NOT NULL,
  bin text NOT NULL CHECK (bin ~ '^[0-9]{6}$'),
  last4 text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
  exp_month smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
  exp_year smallint NOT NULL CHECK (exp_year BETWEEN 2000 AND 2099),
  data_key_id uuid REFERENCES data_keys (id),
  iv bytea CHECK (length(iv) = 12),
  tag bytea CHECK (length(tag) = 16),
  ciphertext bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz,
  -- An active card always has its ciphertext; a deleted one never does.
  CHECK ((status = 'active') = (ciphertext IS NOT NULL AND iv IS NOT NULL AND tag IS NOT NULL
                                AND data_key_id IS NOT NULL AND fingerprint IS NOT NULL))
);
-- Tokens are never reissued within a tenant, deleted or not.
CREATE UNIQUE INDEX cards_tenant_token ON cards (tenant_id, token);
-- One active token per PAN per tenant: concurrent tokenizations of one PAN converge on this index.
-- Fingerprint first: led by tenant_id, the planner (without statistics yet) chose it for token lookups too.
CREATE UNIQUE INDEX cards_fingerprint_tenant ON cards (fingerprint, tenant_id) WHERE status = 'active';
