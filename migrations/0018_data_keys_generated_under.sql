-- The KMS key each data key was generated under, never changed by a re-wrap (kms_key_id is): so `keys rotate
-- --reencrypt-cards` re-seals exactly the cards whose data key another KMS key generated, also one an instance
-- that had not yet taken the rotation up generated after it started. Null for keys from before this migration:
-- those are judged by their age, as before.
ALTER TABLE data_keys ADD COLUMN generated_under text;
