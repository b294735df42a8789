-- stockade:destructive drops tenants.plan (always 'free') and tenants.trial_ends_at (read by nothing; past trial extensions stay in the audit log) and resets tenant_settings.mfa_required to 'off' (each reset audited): back up the database first.
-- Issue #17 items 5 and 7 (engineer H5).

-- Item 5: a password reset (account recovery) revokes the API keys the user
-- created; a tenant may keep them instead (true). Default: revoke.
ALTER TABLE tenant_settings ADD COLUMN keep_api_keys_on_password_reset boolean NOT NULL DEFAULT false;

-- Item 7: nothing enforces a multi-factor requirement until multi-factor
-- sign-in exists, so a stored 'admins' or 'all' becomes 'off' (the API now
-- refuses them: 422 tenancy.setting_unavailable). Each change waits in
-- migrated_settings until the server appends its tenancy.settings.updated
-- event to the tenant's audit chain (tenancy::settings_reset), then goes.
-- A global table: owner_tenant, not tenant_id, names the tenant.
CREATE TABLE migrated_settings (
    owner_tenant  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    setting       text NOT NULL,
    old_value     text NOT NULL,
    new_value     text NOT NULL,
    PRIMARY KEY (owner_tenant, setting)
);
-- Row-level security is forced on tenant_settings, for its owner too: lift
-- the force for these two statements (this migration's transaction only) so
-- an owner that is not a superuser sees every tenant's row.
ALTER TABLE tenant_settings NO FORCE ROW LEVEL SECURITY;
INSERT INTO migrated_settings (owner_tenant, setting, old_value, new_value)
    SELECT tenant_id, 'mfa_required', mfa_required, 'off'
    FROM tenant_settings WHERE mfa_required <> 'off';
UPDATE tenant_settings SET mfa_required = 'off' WHERE mfa_required <> 'off';
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
GRANT SELECT, DELETE ON migrated_settings TO stockade_app;

-- Item 7: tenants.plan (always 'free') and tenants.trial_ends_at (moved by
-- the removed POST /v1/platform/tenants/{id}/extend-trial) were read by
-- nothing: no limit followed the plan, nothing happened when a trial ended.
-- Plans and trials arrive with billing (issue #23), as subscription state
-- reconciled from the payment provider (SPEC §2.12). The history of every
-- extension stays in the audit log (platform.tenant.trial_extended, in the
-- platform's and the tenant's chains).
ALTER TABLE tenants DROP COLUMN plan;
ALTER TABLE tenants DROP COLUMN trial_ends_at;
