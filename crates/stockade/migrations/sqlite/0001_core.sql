-- Core model: tenants, users, memberships, audit log.
-- Every tenant-owned table has tenant_id first in its primary key and in every
-- unique constraint, so the schema can be distributed by tenant.

CREATE TABLE tenants (
    id                    BLOB PRIMARY KEY NOT NULL,
    slug                  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'suspended', 'pending_deletion')),
    plan                  TEXT NOT NULL DEFAULT 'free',
    trial_ends_at         TEXT,
    deletion_requested_at TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);

CREATE TABLE users (
    id          BLOB PRIMARY KEY NOT NULL,
    email       TEXT NOT NULL,
    -- the normalised (trimmed, lower-cased) email: one account per address
    email_key   TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_email_key ON users (email_key);

CREATE TABLE memberships (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) STRICT;
CREATE INDEX memberships_user ON memberships (user_id);

-- Append-only, hash-chained per tenant. The platform's own log uses the nil
-- tenant id, so it has no foreign key to tenants.
CREATE TABLE audit_events (
    tenant_id        BLOB NOT NULL,
    seq              INTEGER NOT NULL CHECK (seq > 0),
    id               BLOB NOT NULL,
    occurred_at      TEXT NOT NULL,
    actor_type       TEXT NOT NULL,
    actor_id         TEXT,
    impersonator_id  TEXT,
    ip               TEXT,
    user_agent       TEXT,
    request_id       TEXT,
    action           TEXT NOT NULL,
    target_type      TEXT,
    target_id        TEXT,
    outcome          TEXT NOT NULL,
    details          TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;
CREATE UNIQUE INDEX audit_events_id_key ON audit_events (tenant_id, id);

-- The head of each chain (last seq and hash), updated with every append in
-- the same transaction: it allocates the gapless sequence and lets verify
-- notice events deleted from the tail.
CREATE TABLE audit_heads (
    tenant_id   BLOB PRIMARY KEY NOT NULL,
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
