-- Issue #17 items 2, 8 and 9: verified addresses, sign-ups that wait for
-- their verification link, platform-owner grants, canonical email keys.

-- When the owner proved the address (a verification link); NULL for
-- accounts that never did (imported, or created before verification).
ALTER TABLE users ADD COLUMN email_verified_at TEXT;

-- A sign-up (or a new account accepting an invitation) waiting for its
-- verification link: nothing exists until the link is used, so an address
-- that already has an account gets the same answer as a new one. The token
-- (256 bits) is stored only as SHA-256; valid 30 minutes; single use: the
-- row is deleted in the transaction that creates the account.
-- signup: user_id and target_tenant_id are the ids the account and tenant
--   will get (the answer names them), tenant_slug/tenant_name its tenant.
-- invitation: target_tenant_id is the inviting tenant, invitation_id the
--   invitation the account accepts. (Not called tenant_id: the table is
--   global, see 0010_sign_in_links.sql.)
CREATE TABLE email_verifications (
    token_hash       BLOB PRIMARY KEY NOT NULL,
    purpose          TEXT NOT NULL CHECK (purpose IN ('signup', 'invitation')),
    email            TEXT NOT NULL,
    email_key        TEXT NOT NULL,
    name             TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    user_id          BLOB NOT NULL,
    target_tenant_id BLOB NOT NULL,
    tenant_slug      TEXT,
    tenant_name      TEXT,
    invitation_id    BLOB,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL
) STRICT;
CREATE INDEX email_verifications_expires ON email_verifications (expires_at);
CREATE INDEX email_verifications_email ON email_verifications (email_key);

-- Platform owners granted by `stockade platform add-owner` (SPEC §4).
CREATE TABLE platform_owner_grants (
    user_id     BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_at  TEXT NOT NULL
) STRICT;

-- The version of the canonical email key stored in users.email_key
-- (identity::email); `migrate` re-keys older rows, then records it.
CREATE TABLE email_key_version (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version  INTEGER NOT NULL
) STRICT;
INSERT INTO email_key_version (id, version) VALUES (1, 1);
