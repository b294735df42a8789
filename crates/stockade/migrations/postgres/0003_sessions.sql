-- Passwords, login protection, sessions and refresh tokens.

ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;

CREATE TABLE login_throttle (
    email_key     text PRIMARY KEY,
    failures      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    lockouts      integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE sessions (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   uuid NOT NULL,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at           timestamptz NOT NULL,
    last_seen_at         timestamptz NOT NULL,
    ip                   text,
    user_agent           text,
    idle_timeout_secs    bigint NOT NULL,
    absolute_expires_at  timestamptz NOT NULL,
    revoked_at           timestamptz,
    revoked_reason       text,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    session_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (tenant_id, session_id);

-- The current user of a transaction (set by a user-scoped transaction), or NULL.
CREATE FUNCTION stockade_current_user() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('stockade.user_id', true), '')::uuid $$;

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

-- A user-scoped transaction sees that user's own memberships and sessions in
-- every tenant (to choose a tenant at login, and to sign out everywhere); it
-- can change nothing but their sessions. Permissive policies are OR-ed.
CREATE POLICY own_memberships ON memberships FOR SELECT
    USING (user_id = stockade_current_user());
CREATE POLICY own_sessions ON sessions
    USING (user_id = stockade_current_user())
    WITH CHECK (user_id = stockade_current_user());

GRANT EXECUTE ON FUNCTION stockade_current_user() TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, refresh_tokens, login_throttle TO stockade_app;
