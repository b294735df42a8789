-- Issue #19 item 6: how recent a password proof (step-up) sensitive actions
-- need, per tenant: 1 to 60 minutes, 5 by default. The per-request session
-- check reads it with the session (sessions/store/check.rs); a tenant with no
-- settings row gets the default there too.
ALTER TABLE tenant_settings ADD COLUMN step_up_minutes INTEGER NOT NULL DEFAULT 5
    CHECK (step_up_minutes BETWEEN 1 AND 60);
