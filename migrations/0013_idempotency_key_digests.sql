-- Idempotency keys are kept only as keyed digests. A key is the merchant's free text, and a merchant who sent a
-- card number as one would otherwise put it into PostgreSQL in clear (PCI DSS 3.5.1). As with card fingerprints,
-- the digest of fingerprint-key generation g lives in the column of g's parity, each unique per tenant, so a
-- retry keeps matching its record while the tenant's key is rotated (domain/fingerprints.ts).
--
-- `key` keeps the plaintext only of records written before this migration, or by instances of the previous
-- release during a rolling deploy; every instance re-keys those as digests when it starts and every 10 minutes
-- (store/card-store.ts, digestLegacyIdempotencyKeys). Its unique constraint stays for that release's
-- ON CONFLICT (tenant_id, key). The release after this one drops the column.
--
-- Adding the identity column rewrites the table: it holds at most IDEMPOTENCY_TTL_HOURS of keyed tokenize
-- requests, and the rewrite holds tokenize-with-key requests for as long as it takes.
ALTER TABLE idempotency_keys ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (id);
ALTER TABLE idempotency_keys ALTER COLUMN key DROP NOT NULL;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_tenant_key UNIQUE (tenant_id, key);
ALTER TABLE idempotency_keys ADD COLUMN key_digest_odd text, ADD COLUMN key_digest_even text;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_identified
  CHECK (key IS NOT NULL OR key_digest_odd IS NOT NULL OR key_digest_even IS NOT NULL);
CREATE UNIQUE INDEX idempotency_keys_digest_odd ON idempotency_keys (tenant_id, key_digest_odd) WHERE key_digest_odd IS NOT NULL;
CREATE UNIQUE INDEX idempotency_keys_digest_even ON idempotency_keys (tenant_id, key_digest_even) WHERE key_digest_even IS NOT NULL;
-- The records still holding a plaintext key, for the pass that re-keys them.
CREATE INDEX idempotency_keys_plaintext ON idempotency_keys (id) WHERE key IS NOT NULL;
