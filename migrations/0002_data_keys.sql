-- Data keys for card encryption, only ever stored wrapped by the KMS; plaintext exists only in process memory.
CREATE TABLE data_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  purpose text NOT NULL CHECK (purpose IN ('card-data')),
  kms_key_id text NOT NULL,
  wrapped bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_keys_tenant ON data_keys (tenant_id, created_at);
