-- Audit anonymisation on user deletion (SPEC §2.7, §2.15). Events that carry
-- a user's personal data (the user acting, else the user acted on) keep it
-- only sealed, in `pii`, under that user's key; the hashed content holds
-- `subject_id` and `pii_digest` (an HMAC of the personal data under the same
-- key) instead of ip and user agent (canonical form v2). Erasing the user
-- destroys the key, so the sealed part can no longer be read while the chain
-- still verifies. Events written before this migration (no subject_id) keep
-- canonical form v1 and their clear fields.
ALTER TABLE audit_events ADD COLUMN subject_id text;
ALTER TABLE audit_events ADD COLUMN pii bytea;
ALTER TABLE audit_events ADD COLUMN pii_digest text;

-- One row per user whose personal data reached an audit log: `sealed` is the
-- user's 256-bit key sealed (crypto::seal) under the audit subject
-- key-encryption key (derived from the server key `audit_head_hmac`, itself
-- sealed under the master key), with associated data
-- `stockade:audit_subject_key:v1:<user id>`. Erasure sets `sealed` to NULL and
-- `erased_at`: the row stays as a marker, so a key is never made again for
-- that user. Users are global, so this table is too (no tenant_id, no RLS).
CREATE TABLE audit_subject_keys (
    user_id     uuid PRIMARY KEY,
    sealed      bytea,
    created_at  timestamptz NOT NULL,
    erased_at   timestamptz,
    CHECK ((sealed IS NULL) = (erased_at IS NOT NULL))
);
GRANT SELECT, INSERT, UPDATE ON audit_subject_keys TO stockade_app;

-- User deletion (identity::erase) deletes the invitations that name the
-- deleted user in each of their tenants (they hold the address in clear).
GRANT DELETE ON invitations TO stockade_app;
