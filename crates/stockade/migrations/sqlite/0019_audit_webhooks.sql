-- Audit log push to a SIEM (SPEC §2.7, §2.12; issue #6 item 3). See
-- docs/audit-events.md "Webhook push".
--
-- audit_webhooks: at most one endpoint per tenant. `sealed_secret` is the
--   32-byte Standard Webhooks signing secret, sealed under the master key
--   (`master_version`) with associated data
--   `stockade:audit_webhook_secret:<tenant>`; it is never stored in clear.
--   The audit chain itself is the queue: `delivered_seq` is the last event
--   the endpoint acknowledged (2xx). `failures` counts consecutive failed
--   attempts since `failing_since`; `next_attempt_at` holds the backoff.
--   `lease_id`/`lease_until` let one instance at a time deliver a tenant's
--   events. `enabled` goes false after repeated failure.
-- webhook_tenants: the global list of tenants that have an endpoint, so the
--   delivery job opens only their tenant transactions.

CREATE TABLE audit_webhooks (
    tenant_id       BLOB PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    sealed_secret   BLOB NOT NULL,
    master_version  INTEGER NOT NULL,
    enabled         INTEGER NOT NULL,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    failing_since   TEXT,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    lease_id        TEXT,
    lease_until     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE TABLE webhook_tenants (
    -- not `tenant_id`: a global directory, not a tenant-owned row
    owner_tenant BLOB PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
) STRICT;
