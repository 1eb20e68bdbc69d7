-- Back to audit_append as migration 0016 made it, and a head without the time order. Rows already raised keep their
-- recorded_at: the scan that the code before 0019 runs, min(seq) where recorded_at is at or after a time, finds the
-- same first event in them.
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
  v_event text;
  v_node bytea;
  v_carry bigint;
  v_count integer := cardinality(tenant_ids);
BEGIN
  IF cardinality(pieces) <> 3 * v_count OR cardinality(recorded_ats) <> v_count THEN
    RAISE EXCEPTION 'audit_append: % pieces, % tenants and % times do not make whole events',
      cardinality(pieces), v_count, cardinality(recorded_ats) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO v_head FROM audit_head WHERE id = 1 FOR UPDATE;
  v_size := v_head.size;
  v_prev := v_head.last_leaf_hash;
  v_hashes := ARRAY(SELECT decode(h, 'base64') FROM jsonb_array_elements_text(v_head.frontier -> 'hashes') WITH ORDINALITY AS f(h, n) ORDER BY n);
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
    v_size := v_size + 1;
  END LOOP;
  INSERT INTO audit_events (seq, tenant_id, recorded_at, event, leaf_hash)
    SELECT * FROM unnest(v_seqs, tenant_ids, recorded_ats, v_events, v_leaves);
  UPDATE audit_head SET size = v_size, last_leaf_hash = v_prev,
    frontier = jsonb_build_object('size', v_size, 'hashes',
      (SELECT coalesce(jsonb_agg(encode(h, 'base64') ORDER BY n), '[]'::jsonb) FROM unnest(v_hashes) WITH ORDINALITY AS f(h, n)))
  WHERE id = 1;
END;
$$;
ALTER TABLE audit_head
  DROP COLUMN time_ordered_from,
  DROP COLUMN time_ordered_to,
  DROP COLUMN time_before_ordered,
  DROP COLUMN time_last;
