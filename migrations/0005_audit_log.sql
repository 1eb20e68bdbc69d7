-- The append-only audit log: events as canonical JSON leaves of an RFC 9162 Merkle tree, signed checkpoints,
-- the keys that sign them, and the grants that keep the runtime role to INSERT and SELECT on the log.
CREATE TABLE audit_events (
  seq bigint PRIMARY KEY CHECK (seq >= 0),
  tenant_id uuid,
  recorded_at timestamptz NOT NULL,
  -- The exact RFC 8785 bytes that were hashed; verification recomputes the leaf hash from this text.
  event text NOT NULL,
  leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32)
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_time ON audit_events (recorded_at);

-- One row: the size of the tree and its right edge. Appends lock it, which makes sequence numbers
-- gap-free across every vault instance; it is a cache of the log, never trusted by a verifier.
CREATE TABLE audit_head (
  id smallint PRIMARY KEY CHECK (id = 1),
  size bigint NOT NULL,
  last_leaf_hash bytea,
  frontier jsonb NOT NULL
);
INSERT INTO audit_head (id, size, last_leaf_hash, frontier) VALUES (1, 0, NULL, '{"size": 0, "hashes": []}');

CREATE TABLE audit_checkpoints (
  tree_size bigint PRIMARY KEY CHECK (tree_size > 0),
  root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
  -- Compact range at this size, so exports and proofs can start here instead of at leaf 0.
  frontier jsonb NOT NULL,
  jws text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Checkpoint signing keys: the private JWK sealed with AES-256-GCM under a KMS-wrapped data key.
CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  public_jwk jsonb NOT NULL,
  kms_key_id text NOT NULL,
  wrapped_key bytea NOT NULL,
  iv bytea NOT NULL CHECK (length(iv) = 12),
  tag bytea NOT NULL CHECK (length(tag) = 16),
  ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Published from creation, signs from activates_at: verifiers fetch the key before it is used.
  activates_at timestamptz NOT NULL
);

-- Nobody edits history: not the runtime role, not the owner, not a superuser without disabling this trigger.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- The runtime role: the vault's login user is made a member of it; migrations run as the owner.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cardvault_runtime') THEN
    CREATE ROLE cardvault_runtime NOLOGIN;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO cardvault_runtime;
GRANT SELECT, INSERT ON audit_events TO cardvault_runtime;
GRANT SELECT, INSERT ON audit_checkpoints TO cardvault_runtime;
GRANT SELECT, UPDATE ON audit_head TO cardvault_runtime;
GRANT SELECT, INSERT ON signing_keys TO cardvault_runtime;
GRANT SELECT, INSERT, UPDATE ON tenants, api_keys, data_keys, cards, idempotency_keys TO cardvault_runtime;
GRANT DELETE ON idempotency_keys TO cardvault_runtime;
GRANT SELECT ON schema_migrations TO cardvault_runtime;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO cardvault_runtime;
