-- Custom roles per tenant (built-in roles live in code).

CREATE TABLE roles (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    permissions   text NOT NULL DEFAULT '[]',
    record_rules  text NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON roles TO stockade_app;
