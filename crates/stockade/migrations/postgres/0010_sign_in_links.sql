-- One-time sign-in links issued by platform owners (SPEC §2.6): 256-bit
-- token, stored only as SHA-256, valid 15 minutes, single use. Global: the
-- token alone names the link, its user and its tenant. (The tenant column
-- is not called tenant_id: that name marks tenant-owned, row-level-secured
-- tables, and this one is deliberately global.)

CREATE TABLE sign_in_links (
    token_hash       bytea PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- the platform owner who issued it (kept even if that account goes)
    created_by       uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);
CREATE INDEX sign_in_links_user ON sign_in_links (user_id);
CREATE INDEX sign_in_links_tenant ON sign_in_links (target_tenant_id);

GRANT SELECT, INSERT, UPDATE ON sign_in_links TO stockade_app;
