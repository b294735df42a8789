-- Multi-factor sign-in (SPEC §2.4, issue #19). See docs/mfa.md.
--
-- users.mfa_enabled: 1 while the user has a confirmed factor (a TOTP or a
--   WebAuthn credential); kept by mfa::factors in the same transaction as
--   the change. Read by the per-request session check (tenant MFA policy)
--   and by sign-in (a second step is asked for).
-- sessions.amr: how the session's user signed in (RFC 8176 values,
--   space-separated: pwd, otp, hwk, swk, mfa); copied into access tokens.
-- mfa_totp: one TOTP per user. The secret is sealed (AES-256-GCM under the
--   master key, associated data naming the user); last_step is the last
--   accepted RFC 6238 time step: that code, and every earlier one, is
--   refused from then on.
-- mfa_recovery_codes: HMAC-SHA256 of each code under the server key
--   `mfa_recovery_hmac`; used_at marks a spent one.
-- mfa_challenges: the pending second step of a sign-in (`mfa_token`,
--   stored as SHA-256): single-use, 5 minutes, bound to user, tenant and
--   client address. A global table: target_tenant, not tenant_id.
-- webauthn_credentials: passkeys and security keys (the webauthn-rs
--   credential as JSON: public key and signature counter, no secret).
-- webauthn_ceremonies: a registration or authentication in progress
--   (webauthn-rs state, sealed), single-use, 5 minutes.
-- email_outbox.dedup_key: a message queued twice for one cause (one
--   lockout) is stored once.

ALTER TABLE users ADD COLUMN mfa_enabled INTEGER NOT NULL DEFAULT 0
    CHECK (mfa_enabled IN (0, 1));
ALTER TABLE sessions ADD COLUMN amr TEXT;

CREATE TABLE mfa_totp (
    user_id         BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret   BLOB NOT NULL,
    master_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    confirmed_at    TEXT,
    last_step       INTEGER
) STRICT;

CREATE TABLE mfa_recovery_codes (
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (user_id, code_hash)
) STRICT;

CREATE TABLE mfa_challenges (
    token_hash     BLOB PRIMARY KEY NOT NULL,
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_tenant  BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    ip             TEXT,
    first_factor   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    used_at        TEXT,
    failures       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

CREATE TABLE webauthn_credentials (
    id             BLOB PRIMARY KEY NOT NULL,
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id  BLOB NOT NULL,
    name           TEXT NOT NULL,
    passkey        TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('hwk', 'swk')),
    discoverable   INTEGER NOT NULL CHECK (discoverable IN (0, 1)),
    created_at     TEXT NOT NULL,
    last_used_at   TEXT
) STRICT;
CREATE UNIQUE INDEX webauthn_credentials_credential ON webauthn_credentials (credential_id);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);

CREATE TABLE webauthn_ceremonies (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    sealed_state    BLOB NOT NULL,
    master_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT
) STRICT;

ALTER TABLE email_outbox ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX email_outbox_dedup ON email_outbox (dedup_key) WHERE dedup_key IS NOT NULL;
