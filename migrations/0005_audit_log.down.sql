-- Refuses while the audit log holds any event or checkpoint: the log is append-only and never pruned (SECURITY.md).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM audit_checkpoints) THEN
    RAISE EXCEPTION 'the database holds audit events that reverting 0005 would destroy'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM cardvault_runtime;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM cardvault_runtime;
REVOKE USAGE ON SCHEMA public FROM cardvault_runtime;
DROP TABLE signing_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_refuse_change();
