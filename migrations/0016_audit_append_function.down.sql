DROP FUNCTION audit_append(text[], uuid[], timestamptz[]);
