-- Master-key rotation (SPEC §2.9; crypto::master, crypto::rotation): every
-- item sealed under the master key records the master-key version that
-- sealed it, so `stockade keys rotate` can re-wrap items version by version
-- and `keys retire --master` can refuse while a version is still in use.
-- tenant_keys and server_keys have the column already; items stored before
-- this migration were sealed by the only key there was, version 1.

ALTER TABLE signing_keys
    ADD COLUMN master_version INTEGER NOT NULL DEFAULT 1 CHECK (master_version >= 1);

ALTER TABLE email_outbox
    ADD COLUMN master_version INTEGER NOT NULL DEFAULT 1 CHECK (master_version >= 1);
