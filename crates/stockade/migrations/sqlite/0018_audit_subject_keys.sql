-- Audit anonymisation on user deletion (SPEC §2.7, §2.15): see the
-- PostgreSQL migration of the same number. ADD COLUMN does not touch the
-- append-only triggers (they refuse UPDATE and DELETE, not schema changes).
ALTER TABLE audit_events ADD COLUMN subject_id TEXT;
ALTER TABLE audit_events ADD COLUMN pii BLOB;
ALTER TABLE audit_events ADD COLUMN pii_digest TEXT;

CREATE TABLE audit_subject_keys (
    user_id     BLOB PRIMARY KEY NOT NULL,
    sealed      BLOB,
    created_at  TEXT NOT NULL,
    erased_at   TEXT,
    CHECK ((sealed IS NULL) = (erased_at IS NOT NULL))
) STRICT;
