-- Invitations into a tenant: a single-use token (stored only as SHA-256,
-- valid 7 days) sent by email. The token names its tenant
-- (`<tenant hex>.<secret>`), so acceptance looks it up tenant-scoped.

CREATE TABLE invitations (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    token_hash   bytea NOT NULL,
    email        text NOT NULL,
    email_key    text NOT NULL,
    role         text NOT NULL,
    invited_by   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    accepted_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX invitations_token_key ON invitations (tenant_id, token_hash);
CREATE UNIQUE INDEX invitations_open_email_key ON invitations (tenant_id, email_key)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE ON invitations TO stockade_app;
