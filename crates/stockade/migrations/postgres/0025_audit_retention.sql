-- Audit retention cannot erase evidence (SPEC §2.7; issue #17 item 10). See
-- migrations/sqlite/0025_audit_retention.sql for the meaning of each column,
-- and docs/audit-events.md "Retention".

CREATE TABLE audit_retention (
    tenant_id    uuid PRIMARY KEY,
    holds        text NOT NULL DEFAULT '[]',
    days         bigint,
    floor_days   bigint,
    floor_holds  text NOT NULL DEFAULT '[]',
    updated_at   timestamptz NOT NULL
);

ALTER TABLE audit_retention ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_retention FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_retention
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE ON audit_retention TO stockade_app;
