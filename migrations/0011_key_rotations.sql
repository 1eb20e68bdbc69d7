-- KMS key rotations: which KMS key wraps new data keys from which generation on, and how far re-wrapping and the
-- optional re-encryption of cards have come (both resumable). Instances poll the latest generation.
CREATE TABLE key_rotations (
  generation bigint PRIMARY KEY CHECK (generation >= 1),
  -- The canonical id of the new KMS key (aws: its ARN; local: local:<hash>).
  kms_key_id text NOT NULL,
  state text NOT NULL CHECK (state IN ('rewrapping', 'reencrypting', 'completed')),
  reencrypt_cards boolean NOT NULL,
  rewrapped integer NOT NULL DEFAULT 0,
  reencrypted integer NOT NULL DEFAULT 0,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
-- One rotation in progress at a time.
CREATE UNIQUE INDEX key_rotations_one_open ON key_rotations ((true)) WHERE state <> 'completed';

GRANT SELECT, INSERT, UPDATE ON key_rotations TO cardvault_runtime;
-- Re-wrapping replaces a wrapped key and the id of the KMS key that wraps it; nothing else about those rows changes.
GRANT UPDATE (kms_key_id, wrapped_key) ON signing_keys, encryption_keys TO cardvault_runtime;
