-- Core model: tenants, users, memberships, audit log.
-- Runs as the table owner. The server itself runs as stockade_app, which owns
-- nothing and cannot bypass row-level security.

DO $$
BEGIN
    CREATE ROLE stockade_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
EXCEPTION
    -- roles are cluster-wide: another database of this cluster made it already
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'stockade_app', 'MEMBER') THEN
        EXECUTE format('GRANT stockade_app TO %I', current_user);
    END IF;
END
$$;

-- The tenant of the current transaction, or NULL when none is set.
CREATE FUNCTION stockade_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('stockade.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id                    uuid PRIMARY KEY,
    slug                  text NOT NULL,
    name                  text NOT NULL,
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'suspended', 'pending_deletion')),
    plan                  text NOT NULL DEFAULT 'free',
    trial_ends_at         timestamptz,
    deletion_requested_at timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    email_key   text NOT NULL,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

CREATE TABLE memberships (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE audit_events (
    tenant_id        uuid NOT NULL,
    seq              bigint NOT NULL CHECK (seq > 0),
    id               uuid NOT NULL,
    occurred_at      timestamptz NOT NULL,
    actor_type       text NOT NULL,
    actor_id         text,
    impersonator_id  text,
    ip               text,
    user_agent       text,
    request_id       text,
    action           text NOT NULL,
    target_type      text,
    target_id        text,
    outcome          text NOT NULL,
    details          text NOT NULL,
    prev_hash        text NOT NULL,
    hash             text NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_events_id_key ON audit_events (tenant_id, id);

CREATE TABLE audit_heads (
    tenant_id   uuid PRIMARY KEY,
    seq         bigint NOT NULL,
    hash        text NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Row-level security on every tenant-owned table, forced even for the owner.
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_heads
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

-- What the server role may do. Audit events are append-only for it: INSERT
-- and SELECT, never UPDATE or DELETE.
GRANT USAGE ON SCHEMA public TO stockade_app;
GRANT EXECUTE ON FUNCTION stockade_current_tenant() TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, memberships TO stockade_app;
GRANT SELECT, INSERT ON audit_events TO stockade_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO stockade_app;
GRANT SELECT ON _sqlx_migrations TO stockade_app;
