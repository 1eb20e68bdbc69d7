-- The vault's JWE decryption keys for card data the hosted form and backends encrypt before sending:
-- the private JWK sealed with AES-256-GCM under a KMS-wrapped data key, as for signing_keys.
CREATE TABLE encryption_keys (
  kid text PRIMARY KEY,
  -- The JWE key-management algorithm this key accepts; nothing else is ever tried with it.
  alg text NOT NULL,
  public_jwk jsonb NOT NULL,
  kms_key_id text NOT NULL,
  wrapped_key bytea NOT NULL,
  iv bytea NOT NULL CHECK (length(iv) = 12),
  tag bytea NOT NULL CHECK (length(tag) = 16),
  ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Published and decrypting from creation; clients are told to encrypt to it only from activates_at, so
  -- every cached copy of the JWKS has it before the first client uses it.
  activates_at timestamptz NOT NULL,
  -- Once past, the key is unpublished and decrypts nothing more; set once, never cleared.
  retires_at timestamptz
);

-- Insert and read; the only change the runtime may make is to retire a key.
GRANT SELECT, INSERT ON encryption_keys TO cardvault_runtime;
GRANT UPDATE (retires_at) ON encryption_keys TO cardvault_runtime;
