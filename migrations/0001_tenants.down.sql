-- Refuses while any tenant exists: reverting would destroy every tenant, its fingerprint key and its API keys.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM tenants) THEN
    RAISE EXCEPTION 'the database holds tenants that reverting 0001 would destroy (with their fingerprint and API keys)'
      USING ERRCODE = 'object_in_use';
  END IF;
END
$$;
DROP TABLE api_keys;
DROP TABLE tenants;
