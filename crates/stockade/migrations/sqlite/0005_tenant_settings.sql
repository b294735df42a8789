-- Per-tenant security settings (more columns arrive with the settings API).

CREATE TABLE tenant_settings (
    tenant_id              BLOB PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- JSON of identity::password::PasswordPolicy; '{}' means the defaults
    password_policy        TEXT NOT NULL DEFAULT '{}',
    session_idle_secs      INTEGER NOT NULL DEFAULT 28800,
    session_absolute_secs  INTEGER NOT NULL DEFAULT 2592000,
    updated_at             TEXT NOT NULL
) STRICT;
