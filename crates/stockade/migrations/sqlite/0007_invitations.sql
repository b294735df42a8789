-- Invitations into a tenant: a single-use token (stored only as SHA-256,
-- valid 7 days) sent by email. The token names its tenant
-- (`<tenant hex>.<secret>`), so acceptance looks it up tenant-scoped.

CREATE TABLE invitations (
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           BLOB NOT NULL,
    token_hash   BLOB NOT NULL,
    -- the address as given, and its normalised key (trimmed, lower-cased)
    email        TEXT NOT NULL,
    email_key    TEXT NOT NULL,
    role         TEXT NOT NULL,
    invited_by   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    accepted_at  TEXT,
    accepted_by  BLOB REFERENCES users (id) ON DELETE SET NULL,
    revoked_at   TEXT,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX invitations_token_key ON invitations (tenant_id, token_hash);
-- At most one open invitation per address and tenant (re-inviting revokes
-- the previous one first).
CREATE UNIQUE INDEX invitations_open_email_key ON invitations (tenant_id, email_key)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
