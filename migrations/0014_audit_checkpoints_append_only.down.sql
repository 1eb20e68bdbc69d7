-- Checkpoints editable by the owner again, as before 0014.
DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
DROP TRIGGER audit_checkpoints_no_update_delete ON audit_checkpoints;
DROP FUNCTION audit_checkpoints_refuse_change();
