-- API keys (SPEC §2.8). See docs/api-keys.md.
--
-- api_keys: one row per key of a tenant. `hash` is HMAC-SHA256 of the key's
--   public id and secret under the server key `api_key_hmac`
--   (crypto::server_keys, sealed under the master key): a copy of this table
--   alone cannot authenticate. The secret itself is never stored. `scopes`
--   is a JSON array of permissions; the key acts with those of them its
--   creator (`created_by`) still holds at each request. Rotation sets
--   `grace_until` (the old key works until then) and `replaced_by`.
-- api_key_ids: the global map from a key's public id to its tenant, so
--   authentication can open a tenant-scoped transaction (and, on
--   PostgreSQL, row-level security) before reading the key.

CREATE TABLE api_keys (
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           BLOB NOT NULL,
    public_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    hash         BLOB NOT NULL,
    created_by   BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    grace_until  TEXT,
    replaced_by  BLOB,
    last_used_at TEXT,
    last_used_ip TEXT,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX api_keys_public_id ON api_keys (tenant_id, public_id);

CREATE TABLE api_key_ids (
    public_id TEXT PRIMARY KEY NOT NULL,
    -- not `tenant_id`: a global directory, not a tenant-owned row (the
    -- schema tests hold every `tenant_id` column to RLS)
    owner_tenant BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
) STRICT;

-- Requests per minute per API key (SPEC §2.8, issue #7).
ALTER TABLE tenant_settings ADD COLUMN api_key_rate_per_minute INTEGER NOT NULL DEFAULT 600
    CHECK (api_key_rate_per_minute BETWEEN 1 AND 100000);
