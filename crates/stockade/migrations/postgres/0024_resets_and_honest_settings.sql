-- Issue #17 items 5 and 7 (engineer H5).

-- Item 5: a password reset (account recovery) revokes the API keys the user
-- created; a tenant may keep them instead (true). Default: revoke.
ALTER TABLE tenant_settings ADD COLUMN keep_api_keys_on_password_reset boolean NOT NULL DEFAULT false;
