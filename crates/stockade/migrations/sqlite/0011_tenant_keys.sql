-- Per-tenant keys for envelope encryption (SPEC §2.9; crypto::envelope).
--
-- purpose 'data':  AES-256-GCM keys for documents, one row per version
--                  (the highest live version encrypts, all live ones decrypt).
-- purpose 'index': the HMAC-SHA256 key of the tenant's blind indexes.
-- wrapped_key is the 32-byte key sealed under the master key (crypto::seal),
-- with associated data `stockade:tenant_key:<tenant>:<purpose>:<version>`, so a
-- wrapped key moved to another tenant, purpose or version does not open.
-- master_version names the master key that wrapped it.
--
-- Version 0 of purpose 'data' is the tenant's key STATE ROW, never a key
-- (wrapped_key empty, master_version 0): created with the keys, with
-- retired_at NULL while they live; destroying the keys (crypto-shredding)
-- deletes every wrapped key and sets its retired_at, which marks the tenant
-- as shredded so keys are never silently provisioned again. Writers lock
-- this row first, which orders provisioning, new versions and destruction.
-- For key rows (version > 0), retired_at set means "no longer decrypts".

CREATE TABLE tenant_keys (
    tenant_id      BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose        TEXT NOT NULL CHECK (purpose IN ('data', 'index')),
    version        INTEGER NOT NULL CHECK (version >= 0 AND version <= 4294967295),
    wrapped_key    BLOB NOT NULL,
    master_version INTEGER NOT NULL DEFAULT 1 CHECK (master_version >= 0),
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    PRIMARY KEY (tenant_id, purpose, version),
    CHECK ((version = 0 AND purpose = 'data' AND length(wrapped_key) = 0)
           OR (version > 0 AND length(wrapped_key) > 0))
) STRICT;
