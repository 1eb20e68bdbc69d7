-- Refuses while any card is stored: reverting would destroy the cards on file.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM cards) THEN
    RAISE EXCEPTION 'the database holds cards that reverting 0003 would destroy'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP TABLE cards;
