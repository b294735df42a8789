-- Token signing keys: a global table (keys belong to the server, not to a
-- tenant), so no tenant_id and no row-level security. The secret half
-- (Ed25519 PKCS#8 DER or HS256 secret) is sealed with AES-256-GCM under the
-- master key, the kid bound as associated data; it is never stored in clear.
-- The current key is the one row with retired_at NULL.

CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    alg            text NOT NULL CHECK (alg IN ('EdDSA', 'HS256')),
    sealed_secret  bytea NOT NULL,
    -- the raw 32-byte Ed25519 public key; NULL for HS256
    public_key     bytea,
    created_at     timestamptz NOT NULL,
    retired_at     timestamptz,
    CHECK ((alg = 'EdDSA') = (public_key IS NOT NULL))
);

-- At most one current key.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;

-- Keys are retired, never deleted, by the server.
GRANT SELECT, INSERT, UPDATE ON signing_keys TO stockade_app;
