REVOKE ALL ON ALL TABLES IN SCHEMA public FROM cardvault_runtime;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM cardvault_runtime;
REVOKE USAGE ON SCHEMA public FROM cardvault_runtime;
DROP TABLE signing_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_refuse_change();
