ALTER TABLE data_keys DROP COLUMN generated_under;
