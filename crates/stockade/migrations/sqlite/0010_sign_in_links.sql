-- One-time sign-in links issued by platform owners (SPEC §2.6): 256-bit
-- token, stored only as SHA-256, valid 15 minutes, single use. Global: the
-- token alone names the link, its user and its tenant. (The tenant column
-- is not called tenant_id: that name marks tenant-owned, row-level-secured
-- tables, and this one is deliberately global.)

CREATE TABLE sign_in_links (
    token_hash       BLOB PRIMARY KEY NOT NULL,
    user_id          BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_tenant_id BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- the platform owner who issued it (kept even if that account goes)
    created_by       BLOB NOT NULL,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    used_at          TEXT
) STRICT;
CREATE INDEX sign_in_links_user ON sign_in_links (user_id);
CREATE INDEX sign_in_links_tenant ON sign_in_links (target_tenant_id);
