-- Cards the account updater can change: closed and merged states, a version per change, enrollment and consent.
-- A closed card keeps its ciphertext (the merchant may still refund against it); a merged one keeps none: its
-- token resolves to the card it was merged into (see README, "Account updater").
ALTER TABLE cards DROP CONSTRAINT cards_status_check;
ALTER TABLE cards ADD CONSTRAINT cards_status_check CHECK (status IN ('active', 'closed', 'merged', 'deleted'));
ALTER TABLE cards DROP CONSTRAINT cards_check;
ALTER TABLE cards ADD CONSTRAINT cards_sealed_check
  CHECK ((status IN ('active', 'closed')) = (ciphertext IS NOT NULL AND iv IS NOT NULL AND tag IS NOT NULL
                                             AND data_key_id IS NOT NULL AND fingerprint IS NOT NULL));

ALTER TABLE cards
  -- Bumped by every change the account updater applies; card_updates holds one row per version after 1.
  ADD COLUMN version integer NOT NULL DEFAULT 1,
  -- The issuer asked the merchant to contact the cardholder; cleared by the next update that is not a contact.
  ADD COLUMN contact_cardholder boolean NOT NULL DEFAULT false,
  -- Card-on-file consent: enrolled while set; the merchant's own reference to the consent record it holds.
  ADD COLUMN updater_enrolled_at timestamptz,
  ADD COLUMN updater_consent_ref text CHECK (length(updater_consent_ref) BETWEEN 1 AND 64),
  ADD COLUMN last_inquired_at timestamptz,
  ADD COLUMN closed_at timestamptz,
  -- The surviving token when an update moved this card's number onto another token.
  ADD COLUMN merged_into text,
  ADD CONSTRAINT cards_merged_check CHECK ((status = 'merged') = (merged_into IS NOT NULL));

-- A closed card still owns its number: tokenizing it again finds the closed token rather than a new one.
DROP INDEX cards_fingerprint_tenant;
CREATE UNIQUE INDEX cards_fingerprint_tenant ON cards (fingerprint, tenant_id) WHERE status IN ('active', 'closed');

-- The cards a run inquires: enrolled, active, least recently inquired first.
CREATE INDEX cards_updater_due ON cards (tenant_id, last_inquired_at NULLS FIRST)
  WHERE status = 'active' AND updater_enrolled_at IS NOT NULL;
