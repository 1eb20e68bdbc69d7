-- Back to one fingerprint key per tenant. Refuses (NOT NULL fails) once any tenant has rotated its fingerprint
-- key: generation 1 is then destroyed, and its cards' fingerprints live only in the column dropped here.
DROP INDEX idempotency_keys_generation;
ALTER TABLE idempotency_keys DROP COLUMN digest_generation;
UPDATE tenants t SET fingerprint_kms_key_id = k.kms_key_id, fingerprint_key_wrapped = k.key_wrapped
  FROM fingerprint_keys k WHERE k.tenant_id = t.id AND k.generation = 1 AND k.state = 'current';
ALTER TABLE tenants ALTER COLUMN fingerprint_kms_key_id SET NOT NULL, ALTER COLUMN fingerprint_key_wrapped SET NOT NULL;
DROP INDEX cards_fingerprint_even_tenant;
ALTER TABLE cards DROP CONSTRAINT cards_sealed_check;
ALTER TABLE cards DROP COLUMN fingerprint_even;
ALTER TABLE cards ADD CONSTRAINT cards_sealed_check
  CHECK ((status IN ('active', 'closed')) = (ciphertext IS NOT NULL AND iv IS NOT NULL AND tag IS NOT NULL
                                             AND data_key_id IS NOT NULL AND fingerprint IS NOT NULL));
DROP TABLE fingerprint_keys;
