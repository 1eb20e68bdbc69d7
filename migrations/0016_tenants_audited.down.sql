ALTER TABLE tenants DROP COLUMN audited_at;
