-- More per-tenant security settings.

ALTER TABLE tenant_settings ADD COLUMN mfa_required text NOT NULL DEFAULT 'off'
    CHECK (mfa_required IN ('off', 'admins', 'all'));
ALTER TABLE tenant_settings ADD COLUMN ip_allowlist text NOT NULL DEFAULT '[]';
ALTER TABLE tenant_settings ADD COLUMN audit_retention_days integer NOT NULL DEFAULT 90
    CHECK (audit_retention_days BETWEEN 1 AND 3650);
