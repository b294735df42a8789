-- Audit log push to a SIEM. See migrations/sqlite/0019_audit_webhooks.sql for
-- the meaning of each column, and docs/audit-events.md "Webhook push".

CREATE TABLE audit_webhooks (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url             text NOT NULL,
    sealed_secret   bytea NOT NULL,
    master_version  bigint NOT NULL,
    enabled         boolean NOT NULL,
    delivered_seq   bigint NOT NULL DEFAULT 0,
    failures        bigint NOT NULL DEFAULT 0,
    failing_since   timestamptz,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    lease_id        text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

ALTER TABLE audit_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_webhooks
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON audit_webhooks TO stockade_app;

CREATE TABLE webhook_tenants (
    -- not `tenant_id`: a global directory, not a tenant-owned row
    owner_tenant uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE
);
GRANT SELECT, INSERT, DELETE ON webhook_tenants TO stockade_app;
