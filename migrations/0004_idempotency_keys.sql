-- Responses to tokenize requests sent with an Idempotency-Key, kept at least 24 h so a retry never duplicates.
CREATE TABLE idempotency_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  -- Keyed digest of the request (HMAC under the tenant fingerprint key): never a plain hash of card data.
  request_digest text NOT NULL,
  response jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
