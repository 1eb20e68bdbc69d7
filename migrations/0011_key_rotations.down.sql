REVOKE UPDATE (kms_key_id, wrapped_key) ON signing_keys, encryption_keys FROM cardvault_runtime;
DROP TABLE key_rotations;
