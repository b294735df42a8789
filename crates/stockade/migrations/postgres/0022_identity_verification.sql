-- Issue #17 items 2, 8 and 9: verified addresses, sign-ups that wait for
-- their verification link, platform-owner grants, canonical email keys.
-- (Comments on each table: see the SQLite migration of the same number.)

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

CREATE TABLE email_verifications (
    token_hash       bytea PRIMARY KEY,
    purpose          text NOT NULL CHECK (purpose IN ('signup', 'invitation')),
    email            text NOT NULL,
    email_key        text NOT NULL,
    name             text NOT NULL,
    password_hash    text NOT NULL,
    user_id          uuid NOT NULL,
    target_tenant_id uuid NOT NULL,
    tenant_slug      text,
    tenant_name      text,
    invitation_id    uuid,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX email_verifications_expires ON email_verifications (expires_at);
CREATE INDEX email_verifications_email ON email_verifications (email_key);

CREATE TABLE platform_owner_grants (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    granted_at  timestamptz NOT NULL
);

CREATE TABLE email_key_version (
    id       integer PRIMARY KEY CHECK (id = 1),
    version  integer NOT NULL
);
INSERT INTO email_key_version (id, version) VALUES (1, 1);

GRANT SELECT, INSERT, DELETE ON email_verifications TO stockade_app;
GRANT SELECT, INSERT, DELETE ON platform_owner_grants TO stockade_app;
GRANT SELECT, UPDATE ON email_key_version TO stockade_app;
