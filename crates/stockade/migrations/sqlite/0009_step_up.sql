-- Step-up authentication: when the session's user last proved their
-- password (sign-in or re-authentication); sensitive actions need it recent.
ALTER TABLE sessions ADD COLUMN authenticated_at TEXT;
-- Platform impersonation: the platform owner acting through this session.
ALTER TABLE sessions ADD COLUMN impersonator_id BLOB;
