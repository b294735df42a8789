-- Multi-factor sign-in (SPEC §2.4, issue #19). See
-- migrations/sqlite/0027_mfa.sql for the meaning of each table and column,
-- and docs/mfa.md. Every table here is global (a user's factors serve all
-- their tenants): no tenant_id column, no row-level security.

ALTER TABLE users ADD COLUMN mfa_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE sessions ADD COLUMN amr text;

CREATE TABLE mfa_totp (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret   bytea NOT NULL,
    master_version  bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    last_step       bigint
);

CREATE TABLE mfa_recovery_codes (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    token_hash     bytea PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_tenant  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    ip             text,
    first_factor   text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    failures       bigint NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

CREATE TABLE webauthn_credentials (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id  bytea NOT NULL,
    name           text NOT NULL,
    passkey        text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('hwk', 'swk')),
    discoverable   boolean NOT NULL,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz
);
CREATE UNIQUE INDEX webauthn_credentials_credential ON webauthn_credentials (credential_id);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);

CREATE TABLE webauthn_ceremonies (
    id              uuid PRIMARY KEY,
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    sealed_state    bytea NOT NULL,
    master_version  bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

ALTER TABLE email_outbox ADD COLUMN dedup_key text;
CREATE UNIQUE INDEX email_outbox_dedup ON email_outbox (dedup_key) WHERE dedup_key IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_totp TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_recovery_codes TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_challenges TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webauthn_credentials TO stockade_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webauthn_ceremonies TO stockade_app;
