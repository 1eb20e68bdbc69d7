-- recorded_at in sequence order, so that an export finds the first event at or after a time with a binary search
-- of the primary key (src/store/audit-store.ts, seqAtTime) instead of a scan (seconds at a few million events, then
-- the statement timeout). Each instance stamps an event when it queues it and the head lock numbers it later, so
-- across instances the stamps are only nearly in sequence order. From here on both ways of appending store as each
-- row's recorded_at the latest stamp at or before it in the log, carried in the head (time_last). Which event is the
-- first stamped at or after a time does not change (an event stamped at or after it keeps a row at or after it, and
-- a row is raised only to a stamp an earlier event has), and the event's JSON, the hashed leaf that exports show,
-- keeps its own time. A trigger could raise the rows too, but costs about as much as the insert, per row, while
-- the head is locked.
--
-- Rows appended before keep their stamps (the log is append-only). The head says where the ordered rows are:
-- [time_ordered_from, time_ordered_to), and the latest stamp before them. A vault of the previous release still
-- appending under the lock during a rolling upgrade moves size but not time_ordered_to; the next append made here
-- then starts the ordered rows again after its rows, from the latest stamp in the log. (Its one-statement appends
-- call the audit_append below.)
ALTER TABLE audit_head
  ADD COLUMN time_ordered_from bigint,
  ADD COLUMN time_ordered_to bigint,
  ADD COLUMN time_before_ordered timestamptz,
  ADD COLUMN time_last timestamptz;
-- ALTER TABLE waited for appends in flight and holds back new ones until commit: nothing comes between these reads.
UPDATE audit_head SET time_ordered_from = size, time_ordered_to = size,
  time_before_ordered = (SELECT max(recorded_at) FROM audit_events), time_last = (SELECT max(recorded_at) FROM audit_events)
WHERE id = 1;

-- audit_append of migration 0016, storing each row's recorded_at as above; the events and hashes are the same.
CREATE OR REPLACE FUNCTION audit_append(pieces text[], tenant_ids uuid[], recorded_ats timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_head audit_head%ROWTYPE;
  v_size bigint;
  v_prev bytea;
  v_hashes bytea[];
  v_seqs bigint[] := '{}';
  v_events text[] := '{}';
  v_leaves bytea[] := '{}';
  v_times timestamptz[] := '{}';
  v_event text;
  v_node bytea;
  v_carry bigint;
  v_count integer := cardinality(tenant_ids);
  v_ordered_from bigint;
  v_before timestamptz;
  v_time timestamptz;
BEGIN
  IF cardinality(pieces) <> 3 * v_count OR cardinality(recorded_ats) <> v_count THEN
    RAISE EXCEPTION 'audit_append: % pieces, % tenants and % times do not make whole events',
      cardinality(pieces), v_count, cardinality(recorded_ats) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO v_head FROM audit_head WHERE id = 1 FOR UPDATE;
  v_size := v_head.size;
  v_prev := v_head.last_leaf_hash;
  v_hashes := ARRAY(SELECT decode(h, 'base64') FROM jsonb_array_elements_text(v_head.frontier -> 'hashes') WITH ORDINALITY AS f(h, n) ORDER BY n);
  IF v_head.time_ordered_to = v_head.size THEN
    v_ordered_from := v_head.time_ordered_from;
    v_before := v_head.time_before_ordered;
    v_time := v_head.time_last;
  ELSE
    -- A vault of the previous release appended last: its rows keep their stamps, and the ordered rows start here.
    v_ordered_from := v_head.size;
    v_before := (SELECT max(recorded_at) FROM audit_events);
    v_time := v_before;
  END IF;
  FOR i IN 1 .. v_count LOOP
    v_event := pieces[3 * i - 2] || CASE WHEN v_prev IS NULL THEN 'null' ELSE '"' || encode(v_prev, 'base64') || '"' END
               || pieces[3 * i - 1] || v_size::text || pieces[3 * i];
    v_prev := sha256('\x00'::bytea || convert_to(v_event, 'UTF8'));
    -- Each trailing 1 bit of the size is a subtree as tall as the one carried: merge, like binary addition.
    v_node := v_prev;
    v_carry := v_size;
    WHILE v_carry % 2 = 1 LOOP
      v_node := sha256('\x01'::bytea || v_hashes[cardinality(v_hashes)] || v_node);
      v_hashes := v_hashes[1 : cardinality(v_hashes) - 1];
      v_carry := v_carry / 2;
    END LOOP;
    v_hashes := v_hashes || v_node;
    v_seqs := v_seqs || v_size;
    v_events := v_events || v_event;
    v_leaves := v_leaves || v_prev;
    v_time := greatest(v_time, recorded_ats[i]);
    v_times := v_times || v_time;
    v_size := v_size + 1;
  END LOOP;
  INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash)
    SELECT * FROM unnest(v_seqs, tenant_ids, v_times, v_events, v_leaves);
  UPDATE audit_head SET size = v_size, last_leaf_hash = v_prev,
    frontier = jsonb_build_object('size', v_size, 'hashes',
      (SELECT coalesce(jsonb_agg(encode(h, 'base64') ORDER BY n), '[]'::jsonb) FROM unnest(v_hashes) WITH ORDINALITY AS f(h, n))),
    time_ordered_from = v_ordered_from, time_ordered_to = v_size, time_before_ordered = v_before, time_last = v_time
  WHERE id = 1;
END;
$$;
