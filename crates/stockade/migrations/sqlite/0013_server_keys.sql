-- Server-wide secret keys that are not per tenant (crypto::server_keys), e.g.
-- the HMAC key of API-key hashes. `sealed` is the 32-byte key sealed under
-- the master key (crypto::seal) with associated data
-- `stockade:server_key:<purpose>`; master_version names the master key.
CREATE TABLE server_keys (
    purpose        TEXT PRIMARY KEY,
    sealed         BLOB NOT NULL,
    master_version INTEGER NOT NULL DEFAULT 1 CHECK (master_version >= 1),
    created_at     TEXT NOT NULL
) STRICT;
