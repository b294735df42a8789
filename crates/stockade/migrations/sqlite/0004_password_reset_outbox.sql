-- Password-reset tokens (stored only as SHA-256) and the email outbox.

CREATE TABLE password_resets (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
) STRICT;
CREATE INDEX password_resets_user ON password_resets (user_id);

-- Outgoing email. The body holds single-use links, so it is sealed
-- (AES-256-GCM under the master key) and never stored in clear.
CREATE TABLE email_outbox (
    id           BLOB PRIMARY KEY NOT NULL,
    to_address   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    sealed_body  BLOB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'sent', 'failed', 'bounced')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;
CREATE INDEX email_outbox_status ON email_outbox (status, created_at);
