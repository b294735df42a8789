-- stockade:destructive drops tenants.plan (always 'free') and tenants.trial_ends_at (read by nothing; past trial extensions stay in the audit log) and resets tenant_settings.mfa_required to 'off' (each reset audited): back up the database first.
-- Issue #17 items 5 and 7 (engineer H5).

-- Item 5: a password reset (account recovery) revokes the API keys the user
-- created; a tenant may keep them instead (1). Default: revoke.
ALTER TABLE tenant_settings ADD COLUMN keep_api_keys_on_password_reset INTEGER NOT NULL DEFAULT 0
    CHECK (keep_api_keys_on_password_reset IN (0, 1));

-- Item 7: nothing enforces a multi-factor requirement until multi-factor
-- sign-in exists, so a stored 'admins' or 'all' becomes 'off' (the API now
-- refuses them: 422 tenancy.setting_unavailable). Each change waits in
-- migrated_settings until the server appends its tenancy.settings.updated
-- event to the tenant's audit chain (tenancy::settings_reset), then goes.
-- A global table: owner_tenant, not tenant_id, names the tenant.
CREATE TABLE migrated_settings (
    owner_tenant  BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    setting       TEXT NOT NULL,
    old_value     TEXT NOT NULL,
    new_value     TEXT NOT NULL,
    PRIMARY KEY (owner_tenant, setting)
) STRICT;
INSERT INTO migrated_settings (owner_tenant, setting, old_value, new_value)
    SELECT tenant_id, 'mfa_required', mfa_required, 'off'
    FROM tenant_settings WHERE mfa_required <> 'off';
UPDATE tenant_settings SET mfa_required = 'off' WHERE mfa_required <> 'off';

-- Item 7: tenants.plan (always 'free') and tenants.trial_ends_at (moved by
-- the removed POST /v1/platform/tenants/{id}/extend-trial) were read by
-- nothing: no limit followed the plan, nothing happened when a trial ended.
-- Plans and trials arrive with billing (issue #23), as subscription state
-- reconciled from the payment provider (SPEC §2.12). The history of every
-- extension stays in the audit log (platform.tenant.trial_extended, in the
-- platform's and the tenant's chains).
ALTER TABLE tenants DROP COLUMN plan;
ALTER TABLE tenants DROP COLUMN trial_ends_at;
