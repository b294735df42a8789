-- Audit retention cannot erase evidence (SPEC §2.7; issue #17 item 10).
-- See docs/audit-events.md "Retention".
--
-- One row per audit chain (`tenant_id`; the nil id is the platform's chain):
-- `holds` is a JSON array of {"days": N, "until": RFC 3339}: when a chain's
-- retention is shortened from N days, the events written before the change
-- keep N days, so the purge keeps at least N days until `until` (the change
-- plus N days). Only the platform's row uses `days` and `floor_days` (the
-- platform chain's retention and the deployment floor last applied, from
-- STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS and STOCKADE_AUDIT_RETENTION_MIN_DAYS,
-- so a change of either is noticed and audited) and `floor_holds` (the same
-- promise when the floor itself is lowered, for every tenant's chain).

CREATE TABLE audit_retention (
    tenant_id    BLOB PRIMARY KEY NOT NULL,
    holds        TEXT NOT NULL DEFAULT '[]',
    days         INTEGER,
    floor_days   INTEGER,
    floor_holds  TEXT NOT NULL DEFAULT '[]',
    updated_at   TEXT NOT NULL
) STRICT;
