-- API keys (SPEC §2.8). See migrations/sqlite/0015_api_keys.sql for the
-- meaning of each column, and docs/api-keys.md.

CREATE TABLE api_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    public_id    text NOT NULL,
    name         text NOT NULL,
    scopes       text NOT NULL,
    hash         bytea NOT NULL,
    created_by   uuid NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    grace_until  timestamptz,
    replaced_by  uuid,
    last_used_at timestamptz,
    last_used_ip text,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_public_id ON api_keys (tenant_id, public_id);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE ON api_keys TO stockade_app;

CREATE TABLE api_key_ids (
    public_id text PRIMARY KEY,
    -- not `tenant_id`: a global directory, not a tenant-owned row (the
    -- schema tests hold every `tenant_id` column to RLS)
    owner_tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
GRANT SELECT, INSERT ON api_key_ids TO stockade_app;

ALTER TABLE tenant_settings ADD COLUMN api_key_rate_per_minute bigint NOT NULL DEFAULT 600
    CHECK (api_key_rate_per_minute BETWEEN 1 AND 100000);
