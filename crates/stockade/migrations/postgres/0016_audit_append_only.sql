-- Audit events are append-only (SPEC §2.7). On PostgreSQL the server role
-- already has only SELECT and INSERT on audit_events (0001_core.sql); this
-- migration re-states that, so a grant added by mistake later is revoked.
-- The SQLite counterpart adds triggers and a purge gate instead.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM stockade_app;
