-- Audit events are append-only (SPEC §2.7). PostgreSQL enforces it with
-- grants (the server role has only SELECT and INSERT on audit_events);
-- SQLite has no roles, so triggers refuse every UPDATE and DELETE of an
-- event unless the purge gate is open. Only the retention purge opens the
-- gate, inside its own transaction, and closes it before committing.
CREATE TABLE audit_purge_gate (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    open  INTEGER NOT NULL CHECK (open IN (0, 1))
) STRICT;
INSERT INTO audit_purge_gate (id, open) VALUES (1, 0);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN (SELECT open FROM audit_purge_gate WHERE id = 1) IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN (SELECT open FROM audit_purge_gate WHERE id = 1) IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
