-- Client sessions for the hosted card form: one row per signed session token (id = its `jti`), used at most once.
CREATE TABLE client_sessions (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  -- The API key that created it (api_keys.id as text); a session dies with its key's revocation.
  created_by text NOT NULL,
  -- Exact origins as a browser serializes them; the only pages that may embed the form for this session.
  allowed_origins text[] NOT NULL CHECK (cardinality(allowed_origins) BETWEEN 1 AND 10),
  -- Both from the vault's clock, equal to the token's `iat` and `exp`.
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  -- Set once, by the one request that redeems it; the runtime never clears it.
  used_at timestamptz,
  -- The card token the session produced; only a used session has one.
  token text,
  CHECK (expires_at > created_at),
  CHECK (token IS NULL OR used_at IS NOT NULL)
);

-- Insert and read; the only changes the runtime may make are to mark a session used and record its token.
GRANT SELECT, INSERT ON client_sessions TO cardvault_runtime;
GRANT UPDATE (used_at, token) ON client_sessions TO cardvault_runtime;
