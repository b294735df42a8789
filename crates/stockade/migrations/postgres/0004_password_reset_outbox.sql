-- Password-reset tokens (stored only as SHA-256) and the email outbox.

CREATE TABLE password_resets (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_resets_user ON password_resets (user_id);

CREATE TABLE email_outbox (
    id           uuid PRIMARY KEY,
    to_address   text NOT NULL,
    kind         text NOT NULL,
    sealed_body  bytea NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'sent', 'failed', 'bounced')),
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX email_outbox_status ON email_outbox (status, created_at);

GRANT SELECT, INSERT, UPDATE ON password_resets, email_outbox TO stockade_app;
