-- Stored tokenize responses by the token they name: deleting a card redacts them in the same statement
-- (store/card-store.ts, destroyCard), so a replay cannot keep serving a deleted card's fingerprint and metadata
-- for the rest of IDEMPOTENCY_TTL_HOURS. Without it each delete would read every record of its tenant.
--
-- The build holds keyed tokenize requests for as long as it takes: the table holds at most
-- IDEMPOTENCY_TTL_HOURS of them.
CREATE INDEX idempotency_keys_card_token ON idempotency_keys (tenant_id, (response -> 'card' ->> 'token'));
