-- The version of the card each inquiry asked about: an answer speaks of the card as it was then, so it is applied
-- only while the card is still at that version, and a late answer cannot undo a newer one. Null on inquiries made
-- before this column: their answers are applied as before.
ALTER TABLE updater_inquiries ADD COLUMN card_version integer;
