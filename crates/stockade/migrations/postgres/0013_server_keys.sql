-- Server-wide secret keys that are not per tenant (crypto::server_keys), e.g.
-- the HMAC key of API-key hashes. `sealed` is the 32-byte key sealed under
-- the master key (crypto::seal) with associated data
-- `stockade:server_key:<purpose>`; master_version names the master key.
CREATE TABLE server_keys (
    purpose        text PRIMARY KEY,
    sealed         bytea NOT NULL,
    master_version bigint NOT NULL DEFAULT 1 CHECK (master_version >= 1),
    created_at     timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON server_keys TO stockade_app;
