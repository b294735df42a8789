-- Passwords, login protection, sessions and refresh tokens.

ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN password_changed_at TEXT;

-- Consecutive failed sign-ins per normalised email, and the lockouts they
-- caused. Keyed by email, not user, so unknown addresses are counted and
-- locked exactly like known ones (no account enumeration).
CREATE TABLE login_throttle (
    email_key     TEXT PRIMARY KEY NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  TEXT,
    lockouts      INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL
) STRICT;

-- A server-side session: one sign-in of one user into one tenant.
CREATE TABLE sessions (
    tenant_id            BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   BLOB NOT NULL,
    user_id              BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at           TEXT NOT NULL,
    last_seen_at         TEXT NOT NULL,
    ip                   TEXT,
    user_agent           TEXT,
    idle_timeout_secs    INTEGER NOT NULL,
    absolute_expires_at  TEXT NOT NULL,
    revoked_at           TEXT,
    revoked_reason       TEXT,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

-- Refresh tokens, stored only as SHA-256. A used token stays (used_at set) so
-- that presenting it again is recognised as reuse.
CREATE TABLE refresh_tokens (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL,
    session_id  BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX refresh_tokens_session ON refresh_tokens (tenant_id, session_id);
