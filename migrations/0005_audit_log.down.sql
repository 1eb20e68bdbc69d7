-- Refuses while the log has any event or checkpoint: it is never pruned (SECURITY.md, PCI DSS 10.5), and reverting
-- would drop it whole, past every trigger that keeps it append-only.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM audit_checkpoints) THEN
    RAISE EXCEPTION 'the audit log has events or checkpoints that reverting 0005 would destroy'
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
