-- Back to plaintext keys. Records kept only as digests cannot be turned back into keys, so they are dropped:
-- within IDEMPOTENCY_TTL_HOURS of a rollback a retry is answered as a new request (its card still converges on
-- the tenant's one token for that number, by fingerprint).
DELETE FROM idempotency_keys WHERE key IS NULL;
DROP INDEX idempotency_keys_plaintext;
DROP INDEX idempotency_keys_digest_even;
DROP INDEX idempotency_keys_digest_odd;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_identified;
ALTER TABLE idempotency_keys DROP COLUMN key_digest_odd, DROP COLUMN key_digest_even;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_tenant_key;
ALTER TABLE idempotency_keys ALTER COLUMN key SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, key);
ALTER TABLE idempotency_keys DROP COLUMN id;
