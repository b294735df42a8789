-- More per-tenant security settings.

-- 'off', 'admins' (owners and admins) or 'all'; enforced when MFA lands
ALTER TABLE tenant_settings ADD COLUMN mfa_required TEXT NOT NULL DEFAULT 'off'
    CHECK (mfa_required IN ('off', 'admins', 'all'));
-- JSON array of CIDRs; empty means every address
ALTER TABLE tenant_settings ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tenant_settings ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 90
    CHECK (audit_retention_days BETWEEN 1 AND 3650);
