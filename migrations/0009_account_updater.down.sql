DROP TABLE card_updates;
DROP TABLE updater_locks;
DROP TABLE updater_inquiries;
DROP TABLE updater_batches;
DROP TABLE updater_runs;
DROP TABLE updater_settings;
