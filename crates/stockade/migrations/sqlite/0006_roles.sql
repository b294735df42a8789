-- Custom roles per tenant (built-in roles live in code).

CREATE TABLE roles (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    -- JSON array of permission strings, e.g. ["records:read:runs"]
    permissions   TEXT NOT NULL DEFAULT '[]',
    -- JSON array of {collection, field}: only records whose field is my user id
    record_rules  TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;
