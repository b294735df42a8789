-- Per-tenant security settings (more columns arrive with the settings API).

CREATE TABLE tenant_settings (
    tenant_id              uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    password_policy        text NOT NULL DEFAULT '{}',
    session_idle_secs      bigint NOT NULL DEFAULT 28800,
    session_absolute_secs  bigint NOT NULL DEFAULT 2592000,
    updated_at             timestamptz NOT NULL
);

ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE ON tenant_settings TO stockade_app;
