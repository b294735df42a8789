-- Token signing keys: a global table (keys belong to the server, not to a
-- tenant). The secret half (Ed25519 PKCS#8 DER or HS256 secret) is sealed with
-- AES-256-GCM under the master key, the kid bound as associated data; it is
-- never stored in clear. The current key is the one row with retired_at NULL.

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL CHECK (alg IN ('EdDSA', 'HS256')),
    sealed_secret  BLOB NOT NULL,
    -- the raw 32-byte Ed25519 public key; NULL for HS256
    public_key     BLOB,
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    CHECK ((alg = 'EdDSA') = (public_key IS NOT NULL))
) STRICT;

-- At most one current key.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;
