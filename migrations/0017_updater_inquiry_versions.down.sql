ALTER TABLE updater_inquiries DROP COLUMN card_version;
