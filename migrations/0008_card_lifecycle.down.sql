-- Back to active and deleted only: refuses while any card is closed or merged rather than lose that state, and
-- while any card is enrolled in the account updater, has been updated or is flagged for its cardholder: the
-- columns dropped here would take the enrolment, its consent reference and the card's version with them.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM cards WHERE updater_enrolled_at IS NOT NULL OR updater_consent_ref IS NOT NULL
                                    OR version > 1 OR contact_cardholder) THEN
    RAISE EXCEPTION 'cards hold account-updater state (enrolment, consent, versions) that reverting 0008 would destroy'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP INDEX cards_updater_due;
DROP INDEX cards_fingerprint_tenant;
CREATE UNIQUE INDEX cards_fingerprint_tenant ON cards (fingerprint, tenant_id) WHERE status = 'active';
ALTER TABLE cards DROP CONSTRAINT cards_merged_check;
ALTER TABLE cards
  DROP COLUMN merged_into,
  DROP COLUMN closed_at,
  DROP COLUMN last_inquired_at,
  DROP COLUMN updater_consent_ref,
  DROP COLUMN updater_enrolled_at,
  DROP COLUMN contact_cardholder,
  DROP COLUMN version;
ALTER TABLE cards DROP CONSTRAINT cards_sealed_check;
ALTER TABLE cards ADD CONSTRAINT cards_check
  CHECK ((status = 'active') = (ciphertext IS NOT NULL AND iv IS NOT NULL AND tag IS NOT NULL
                                AND data_key_id IS NOT NULL AND fingerprint IS NOT NULL));
ALTER TABLE cards DROP CONSTRAINT cards_status_check;
ALTER TABLE cards ADD CONSTRAINT cards_status_check CHECK (status IN ('active', 'deleted'));
