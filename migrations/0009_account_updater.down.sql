-- Refuses while the account updater has history (runs or card updates): reverting would destroy it.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM card_updates) OR EXISTS (SELECT 1 FROM updater_runs) THEN
    RAISE EXCEPTION 'the account updater has runs or card updates that reverting 0009 would destroy'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP TABLE card_updates;
DROP TABLE updater_locks;
DROP TABLE updater_inquiries;
DROP TABLE updater_batches;
DROP TABLE updater_runs;
DROP TABLE updater_settings;
