-- Records: the tenant's business data (SPEC §2.10), encrypted at rest (§2.9).
--
-- collections: a tenant's declared collections and which top-level fields
--   are filterable (blind-indexed). A collection is created on its first
--   record with no indexed fields.
-- records: one JSON document per row, stored only as ciphertext in `body`
--   (crypto::envelope: data-key version || nonce || AES-256-GCM), with
--   associated data binding tenant, table `records`, column `body` and row
--   `<collection>/<id>` (records::cipher). key_version repeats the data-key
--   version of `body` so rotation and `keys retire` can find what uses a
--   version without decrypting. version is the optimistic-concurrency
--   counter (If-Match). key_index is the blind index of the optional
--   caller-chosen `key`, unique per tenant and collection; the key itself is
--   only inside the ciphertext.
-- record_index: keyed blind indexes (HMAC-SHA256 under the tenant's index
--   key) of the declared fields' values, never the values themselves.

CREATE TABLE collections (
    tenant_id      BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    indexed_fields TEXT NOT NULL DEFAULT '[]',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;

CREATE TABLE records (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          BLOB NOT NULL,
    collection  TEXT NOT NULL,
    key_index   BLOB,
    body        BLOB NOT NULL,
    key_version INTEGER NOT NULL CHECK (key_version >= 1),
    version     INTEGER NOT NULL CHECK (version >= 1),
    created_by  BLOB,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, collection) REFERENCES collections (tenant_id, name)
) STRICT;

CREATE UNIQUE INDEX records_key ON records (tenant_id, collection, key_index)
    WHERE key_index IS NOT NULL;
CREATE INDEX records_by_collection ON records (tenant_id, collection, id);
CREATE INDEX records_by_key_version ON records (tenant_id, key_version);

CREATE TABLE record_index (
    tenant_id  BLOB NOT NULL,
    collection TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      BLOB NOT NULL,
    record_id  BLOB NOT NULL,
    PRIMARY KEY (tenant_id, collection, field, value, record_id),
    FOREIGN KEY (tenant_id, record_id) REFERENCES records (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX record_index_by_record ON record_index (tenant_id, record_id);
