-- Fingerprint keys by generation, so a tenant's HMAC key can be replaced (`cardvault keys rotate-fingerprint`):
-- each card keeps its fingerprint in the column of its generation's parity, `fingerprint` for odd generations
-- (every existing fingerprint is generation 1) and `fingerprint_even` for even ones, so a rotation never moves
-- data between columns: it fills the new column, switches lookups to it, then clears the old one.
CREATE TABLE fingerprint_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  generation integer NOT NULL CHECK (generation >= 1),
  -- HMAC-SHA-256 key wrapped by the KMS under context {tenant, purpose: fingerprint}; destroyed once retired.
  kms_key_id text,
  key_wrapped bytea,
  -- next: written beside the current key; current: written, looked up, keys idempotency digests;
  -- previous: still written (and verifies older digests); retiring: no longer used, kept until every instance
  -- has stopped writing it; retired: its column is cleared and the key destroyed.
  state text NOT NULL CHECK (state IN ('next', 'current', 'previous', 'retiring', 'retired')),
  -- Rotation progress, for the resumable command: cards given this generation's fingerprint by the backfill,
  -- and cards whose fingerprint of this generation was cleared when it retired.
  backfilled integer NOT NULL DEFAULT 0,
  cleared integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Every instance re-reads its tenants' keys within 5 s: the command waits past this before relying on a state.
  state_changed_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  UNIQUE (tenant_id, generation),
  CHECK ((state = 'retired') = (key_wrapped IS NULL)),
  CHECK ((kms_key_id IS NULL) = (key_wrapped IS NULL))
);
-- One current key per tenant, and one rotation at a time: no second next key, nor one beside a retiring key.
-- (Two indexes rather than one over next, previous and retiring: the switch demotes current to previous while
-- next still exists, in the same transaction, and a unique index is checked row by row.)
CREATE UNIQUE INDEX fingerprint_keys_current ON fingerprint_keys (tenant_id) WHERE state = 'current';
CREATE UNIQUE INDEX fingerprint_keys_incoming ON fingerprint_keys (tenant_id) WHERE state IN ('next', 'retiring');
CREATE UNIQUE INDEX fingerprint_keys_outgoing ON fingerprint_keys (tenant_id) WHERE state IN ('previous', 'retiring');

INSERT INTO fingerprint_keys (tenant_id, generation, kms_key_id, key_wrapped, state, created_at, state_changed_at)
  SELECT id, 1, fingerprint_kms_key_id, fingerprint_key_wrapped, 'current', created_at, created_at FROM tenants;
-- Legacy: generation 1's key, still there for instances of the previous release during a rolling deploy. This
-- release never reads it, writes NULL for new tenants, and destroys it when generation 1 retires.
ALTER TABLE tenants ALTER COLUMN fingerprint_kms_key_id DROP NOT NULL, ALTER COLUMN fingerprint_key_wrapped DROP NOT NULL;

ALTER TABLE cards ADD COLUMN fingerprint_even text;
-- A live card holds the fingerprint of at least one generation (both while a rotation overlaps them).
ALTER TABLE cards DROP CONSTRAINT cards_sealed_check;
ALTER TABLE cards ADD CONSTRAINT cards_sealed_check
  CHECK ((status IN ('active', 'closed')) = (ciphertext IS NOT NULL AND iv IS NOT NULL AND tag IS NOT NULL
                                             AND data_key_id IS NOT NULL
                                             AND (fingerprint IS NOT NULL OR fingerprint_even IS NOT NULL)));
-- One live token per number per tenant in even generations too; only cards that have one are indexed.
CREATE UNIQUE INDEX cards_fingerprint_even_tenant ON cards (fingerprint_even, tenant_id)
  WHERE status IN ('active', 'closed') AND fingerprint_even IS NOT NULL;

-- Which generation's key made request_digest: a replay after a rotation is checked with that key.
ALTER TABLE idempotency_keys ADD COLUMN digest_generation integer NOT NULL DEFAULT 1;
CREATE INDEX idempotency_keys_generation ON idempotency_keys (tenant_id, digest_generation);

GRANT SELECT, INSERT, UPDATE ON fingerprint_keys TO cardvault_runtime;
