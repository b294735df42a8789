//! Where configuration values come from: an optional TOML file, then the
//! `STOCKADE_*` environment (which wins), and every secret also as
//! `STOCKADE_<NAME>_FILE` (both forms at once is an error). Only the known
//! settings are taken; an unknown one is refused, so a typo cannot leave a
//! control at its default. This module gathers strings and reads secret
//! files; it does not judge values (`config/parse.rs` does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{ConfigError, Secret};

/// The known keys; anything else in the TOML file or as `STOCKADE_*` is
/// rejected so a typo cannot silently leave a control at its default.
const KEYS: &[&str] = &[
    "profile",
    "listen",
    "data_dir",
    "database_url",
    "migrate_database_url",
    "public_url",
    "signup",
    "allow_open_signup",
    "master_key",
    "jwt_alg",
    "signing_key_file",
    "jwt_secret",
    "body_limit",
    "request_timeout_secs",
    "log_format",
    "refresh_reuse_grace",
    "trusted_proxies",
    "tenant_domain",
    "cors_origins",
    "redirect_allowlist",
    "platform_owners",
    "record_max_bytes",
    "import_max_bytes",
    "import_max_rows",
    "redis_url",
    "webhook_allow_private",
    "webhook_ca_file",
    "audit_retention_min_days",
    "audit_platform_retention_days",
    // config/ops.rs
    "admin_listen",
    "admin_allow_remote",
    "alert_window_secs",
    "alert_5xx_percent",
    "alert_5xx_min_requests",
    "alert_4xx_spike_factor",
    "alert_4xx_spike_min",
    "alert_4xx_baseline_windows",
    "alert_rate_limit_hits",
    "alert_webhook_failure_percent",
    "alert_email_failure_percent",
    "alert_delivery_min_attempts",
    "alert_backup_max_age_hours",
    // config/tls.rs
    "header_read_timeout_secs",
    "tls_cert_file",
    "tls_key_file",
    "behind_tls_proxy",
    "http_redirect_listen",
    "acme_challenge_dir",
];
const SECRET_KEYS: &[&str] = &[
    "database_url",
    "migrate_database_url",
    "master_key",
    "jwt_secret",
    "redis_url",
];

/// Raw string values gathered from file then environment.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) values: BTreeMap<String, String>,
    pub(super) secrets: BTreeMap<String, Secret>,
}

impl Raw {
    pub(super) fn read_toml(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.message().to_owned()))?;
        for (key, value) in table {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(file_err(format!(
                        "`{key}` must be a string, integer or boolean, not {}",
                        other.type_str()
                    )));
                }
            };
            let (name, is_file) = match key.strip_suffix("_file") {
                Some(base) if SECRET_KEYS.contains(&base) => (base.to_owned(), true),
                _ => (key.clone(), false),
            };
            if !KEYS.contains(&name.as_str()) {
                return Err(file_err(format!("unknown setting `{key}`")));
            }
            self.put(&name, value, is_file)?;
        }
        Ok(())
    }

    pub(super) fn read_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for name in KEYS {
            let var = format!("STOCKADE_{}", name.to_uppercase());
            let direct = env.get(&var);
            let file = SECRET_KEYS
                .contains(name)
                .then(|| env.get(&format!("{var}_FILE")))
                .flatten();
            match (direct, file) {
                (Some(_), Some(_)) => return Err(ConfigError::BothSecretForms { name: var }),
                (Some(v), None) => self.put(name, v.clone(), false)?,
                (None, Some(path)) => self.put(name, path.clone(), true)?,
                (None, None) => {}
            }
        }
        for var in env.keys() {
            let known = var
                .strip_prefix("STOCKADE_")
                .map(|rest| rest.to_lowercase())
                .is_some_and(|k| {
                    let base = k.strip_suffix("_file").unwrap_or(&k);
                    KEYS.contains(&k.as_str()) || SECRET_KEYS.contains(&base)
                });
            // Variables read elsewhere (by tests and tools) are let through.
            if !known && !var.starts_with("STOCKADE_TEST") {
                return Err(ConfigError::Invalid {
                    name: var.clone(),
                    reason: "unknown setting".to_owned(),
                });
            }
        }
        Ok(())
    }

    fn put(&mut self, name: &str, value: String, is_file: bool) -> Result<(), ConfigError> {
        if SECRET_KEYS.contains(&name) {
            let var = format!("STOCKADE_{}", name.to_uppercase());
            let secret = if is_file {
                let text =
                    std::fs::read_to_string(&value).map_err(|e| ConfigError::SecretFile {
                        name: var.clone(),
                        path: value.clone(),
                        reason: e.to_string(),
                    })?;
                Secret {
                    value: SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned()),
                    origin: format!("{var}_FILE ({value})"),
                    file: Some(PathBuf::from(&value)),
                }
            } else {
                Secret {
                    value: SecretString::from(value),
                    origin: var,
                    file: None,
                }
            };
            self.secrets.insert(name.to_owned(), secret);
        } else {
            self.values.insert(name.to_owned(), value);
        }
        Ok(())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}
