-- Records: the tenant's business data (SPEC §2.10), encrypted at rest (§2.9).
-- See migrations/sqlite/0012_records.sql for the meaning of each column.
-- (bigint rather than integer: the code reads every integer as i64.)

CREATE TABLE collections (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           text NOT NULL,
    indexed_fields text NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE records (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    collection  text NOT NULL,
    key_index   bytea,
    body        bytea NOT NULL,
    key_version bigint NOT NULL CHECK (key_version >= 1),
    version     bigint NOT NULL CHECK (version >= 1),
    created_by  uuid,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, collection) REFERENCES collections (tenant_id, name)
);

CREATE UNIQUE INDEX records_key ON records (tenant_id, collection, key_index)
    WHERE key_index IS NOT NULL;
CREATE INDEX records_by_collection ON records (tenant_id, collection, id);
CREATE INDEX records_by_key_version ON records (tenant_id, key_version);

CREATE TABLE record_index (
    tenant_id  uuid NOT NULL,
    collection text NOT NULL,
    field      text NOT NULL,
    value      bytea NOT NULL,
    record_id  uuid NOT NULL,
    PRIMARY KEY (tenant_id, collection, field, value, record_id),
    FOREIGN KEY (tenant_id, record_id) REFERENCES records (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX record_index_by_record ON record_index (tenant_id, record_id);

ALTER TABLE collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE collections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON collections
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

ALTER TABLE records ENABLE ROW LEVEL SECURITY;
ALTER TABLE records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON records
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

ALTER TABLE record_index ENABLE ROW LEVEL SECURITY;
ALTER TABLE record_index FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON record_index
    USING (tenant_id = stockade_current_tenant())
    WITH CHECK (tenant_id = stockade_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON collections, records, record_index TO stockade_app;
