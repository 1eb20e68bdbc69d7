-- A KMS key rotation can be aborted before any key was re-wrapped (`cardvault keys rotate --abort`): its row stays,
-- as `aborted`, and instances go back to the KMS key of the latest rotation that was not aborted (or the configured
-- one). An aborted rotation is not open: another can start.
ALTER TABLE key_rotations DROP CONSTRAINT key_rotations_state_check;
ALTER TABLE key_rotations ADD CONSTRAINT key_rotations_state_check CHECK (state IN ('rewrapping', 'reencrypting', 'completed', 'aborted'));
DROP INDEX key_rotations_one_open;
CREATE UNIQUE INDEX key_rotations_one_open ON key_rotations ((true)) WHERE state NOT IN ('completed', 'aborted');
