-- Refuses while any data key exists: every card sealed under one would be unreadable for good.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM data_keys) THEN
    RAISE EXCEPTION 'the database holds data keys that reverting 0002 would destroy (every card sealed under them would be lost)'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP TABLE data_keys;
