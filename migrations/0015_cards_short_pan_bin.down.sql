-- Back to a 6-digit bin: refuses while any card holds a shorter one rather than invent the digits it never kept.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM cards WHERE length(bin) < 6) THEN
    RAISE EXCEPTION 'cards of 12-14 digits hold a bin shorter than 6 digits that reverting 0015 cannot restore'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
ALTER TABLE cards DROP CONSTRAINT cards_bin_check;
ALTER TABLE cards ADD CONSTRAINT cards_bin_check CHECK (bin ~ '^[0-9]{6}$');
