-- Refuses while an aborted rotation is recorded: before 0020 the latest row names the active KMS key, and an aborted
-- one would send every instance back to the key it was aborted from.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM key_rotations WHERE state = 'aborted') THEN
    RAISE EXCEPTION 'the database records an aborted key rotation, which the schema before 0020 cannot tell from an active one'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP INDEX key_rotations_one_open;
CREATE UNIQUE INDEX key_rotations_one_open ON key_rotations ((true)) WHERE state <> 'completed';
ALTER TABLE key_rotations DROP CONSTRAINT key_rotations_state_check;
ALTER TABLE key_rotations ADD CONSTRAINT key_rotations_state_check CHECK (state IN ('rewrapping', 'reencrypting', 'completed'));
