-- Issue #19 item 6: how recent a password proof (step-up) sensitive actions
-- need, per tenant: 1 to 60 minutes, 5 by default. See
-- migrations/sqlite/0026_step_up_window.sql. tenant_settings keeps its
-- row-level security and grants (0005).
ALTER TABLE tenant_settings ADD COLUMN step_up_minutes bigint NOT NULL DEFAULT 5
    CHECK (step_up_minutes BETWEEN 1 AND 60);
