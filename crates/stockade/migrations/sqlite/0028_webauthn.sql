-- WebAuthn ceremonies: what a ceremony is bound to (issue #19, docs/webauthn.md).
--
-- webauthn_ceremonies.binding: for a second-factor ceremony, the SHA-256 of
--   the mfa_token it answers (an assertion completes that sign-in and no
--   other); NULL for registration, step-up (bound by user_id) and
--   passwordless sign-in (found by its id).

ALTER TABLE webauthn_ceremonies ADD COLUMN binding BLOB;
CREATE INDEX webauthn_ceremonies_open ON webauthn_ceremonies (kind, user_id, created_at);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
