-- A tenant whose tenant.create event was never committed (the creating process died between the two commits) is
-- marked by audited_at NULL, so that creating it again records the event instead of answering tenant_exists.
ALTER TABLE tenants ADD COLUMN audited_at timestamptz;
-- Tenants made before: audited when their first event is tenant.create (principals.ts records it before any other).
UPDATE tenants t SET audited_at = t.created_at
WHERE (SELECT e.event::jsonb ->> 'action' FROM audit_events e WHERE e.tenant_id = t.id ORDER BY e.seq LIMIT 1) = 'tenant.create';
