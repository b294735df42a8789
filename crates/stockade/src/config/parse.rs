//! What configuration values mean: the gathered strings (`config/sources.rs`)
//! become one typed [`Config`], each value checked against its form and
//! bounds, with one message naming the variable and what it expects. No
//! I/O happens here, and nothing is judged against the profile (production
//! rules are `config/production.rs`).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use url::Url;

use super::sources::Raw;
use super::{
    Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_IMPORT_MAX_BYTES, DEFAULT_IMPORT_MAX_ROWS,
    DEFAULT_LISTEN, DEFAULT_RECORD_MAX_BYTES, JwtAlg, Profile, SignupMode, database,
    is_postgres_url, retention, tls, web,
};

impl Raw {
    pub(super) fn into_config(mut self) -> Result<Config, ConfigError> {
        let profile = match self.get("profile") {
            None | Some("development") => Profile::Development,
            Some("production") => Profile::Production,
            Some(other) => return Err(invalid("profile", other, "development or production")),
        };
        let listen = self
            .get("listen")
            .unwrap_or(DEFAULT_LISTEN)
            .parse()
            .map_err(|_| {
                invalid(
                    "listen",
                    self.get("listen").unwrap_or_default(),
                    "an address like 127.0.0.1:8080",
                )
            })?;
        let data_dir = PathBuf::from(self.get("data_dir").unwrap_or("stockade-data"));
        let public_url = match self.get("public_url") {
            None => None,
            Some(s) => {
                let url = Url::parse(s).map_err(|_| invalid("public_url", s, "an absolute URL"))?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err(invalid("public_url", s, "an http(s):// URL with a host"));
                }
                Some(url)
            }
        };
        let signup = match self.get("signup") {
            None if profile == Profile::Production => SignupMode::Closed,
            None => SignupMode::Open,
            Some("open") => SignupMode::Open,
            Some("closed") => SignupMode::Closed,
            Some(other) => return Err(invalid("signup", other, "open or closed")),
        };
        let allow_open_signup = parse_bool(&self, "allow_open_signup")?.unwrap_or(false);
        let jwt_alg = match self.get("jwt_alg") {
            None | Some("EdDSA") => JwtAlg::EdDsa,
            Some("HS256") => JwtAlg::Hs256,
            Some(other) => return Err(invalid("jwt_alg", other, "EdDSA or HS256")),
        };
        let signing_key_file = self.get("signing_key_file").map(PathBuf::from);
        let body_limit = match self.get("body_limit") {
            None => DEFAULT_BODY_LIMIT,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1024..=64 * 1024 * 1024).contains(n))
                .ok_or_else(|| invalid("body_limit", s, "a byte count from 1024 to 67108864"))?,
        };
        let record_max_bytes = parse_size(
            &self,
            "record_max_bytes",
            DEFAULT_RECORD_MAX_BYTES,
            1024..=16 * 1024 * 1024,
        )?;
        let import_max_bytes = parse_size(
            &self,
            "import_max_bytes",
            DEFAULT_IMPORT_MAX_BYTES,
            1024..=1024 * 1024 * 1024,
        )?;
        let import_max_rows = parse_size(
            &self,
            "import_max_rows",
            DEFAULT_IMPORT_MAX_ROWS,
            1..=10_000_000,
        )?;
        let request_timeout = match self.get("request_timeout_secs") {
            None => Duration::from_secs(30),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=600).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| invalid("request_timeout_secs", s, "seconds from 1 to 600"))?,
        };
        let log_json = match self.get("log_format") {
            None | Some("json") => true,
            Some("pretty") => false,
            Some(other) => return Err(invalid("log_format", other, "json or pretty")),
        };
        let refresh_reuse_grace = match self.get("refresh_reuse_grace") {
            None => Duration::ZERO,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 30)
                .map(Duration::from_secs)
                .ok_or_else(|| invalid("refresh_reuse_grace", s, "seconds from 0 to 30"))?,
        };
        let trusted_proxies_set = self.get("trusted_proxies").is_some();
        let trusted_proxies = match self.get("trusted_proxies") {
            None => Vec::new(),
            Some(s) if s.trim().eq_ignore_ascii_case("none") => Vec::new(),
            Some(s) if s.trim().is_empty() => {
                return Err(invalid(
                    "trusted_proxies",
                    s,
                    "comma-separated CIDRs, or none",
                ));
            }
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map(|n| crate::http::client_ip::canonical_net(n).trunc())
                        .map_err(|_| {
                            invalid("trusted_proxies", p, "comma-separated CIDRs, or none")
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let tenant_domain = match self.get("tenant_domain") {
            None => None,
            Some(d) => {
                let d = d.trim_start_matches('.').to_ascii_lowercase();
                let ok = d.contains('.')
                    && d.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !ok {
                    return Err(invalid("tenant_domain", &d, "a domain like example.com"));
                }
                Some(d)
            }
        };
        let cors_origins = web::cors_origins(&self)?;
        let base = match &public_url {
            Some(url) => Some(url.clone()),
            None => Url::parse(&format!("http://{listen}/")).ok(),
        };
        let redirect_allowlist = web::redirect_allowlist(&self, base.as_ref())?;
        let platform_owners: Vec<String> = self
            .get("platform_owners")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().to_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if let Some(bad) = platform_owners.iter().find(|o| {
            uuid::Uuid::parse_str(o).is_err() && crate::identity::Email::parse(o).is_err()
        }) {
            return Err(invalid(
                "platform_owners",
                bad,
                "comma-separated user ids or emails",
            ));
        }
        let webhook_allow_private = parse_bool(&self, "webhook_allow_private")?.unwrap_or(false);
        let webhook_ca_file = self.get("webhook_ca_file").map(PathBuf::from);
        let (audit_retention_min_days, audit_platform_retention_days) = retention::parse(&self)?;
        let (admin_listen, admin_allow_remote, alerts) = super::ops::parse(&self, listen)?;
        let listeners = tls::parse(&self, public_url.as_ref())?;
        let database_url = self.secrets.remove("database_url");
        if let Some(url) = &database_url {
            let u = url.value.expose_secret();
            if !is_postgres_url(u) && !u.starts_with("sqlite:") {
                return Err(ConfigError::Invalid {
                    name: url.origin.clone(),
                    reason: "expected a postgres:// or sqlite: URL".to_owned(),
                });
            }
        }
        let migrate_database_url = self.secrets.remove("migrate_database_url");
        database::check_urls(database_url.as_ref(), migrate_database_url.as_ref())?;
        let redis_url = self.secrets.remove("redis_url");
        if let Some(url) = &redis_url
            && !url.value.expose_secret().starts_with("redis://")
        {
            return Err(ConfigError::Invalid {
                name: url.origin.clone(),
                reason: "expected a redis:// URL".to_owned(),
            });
        }
        Ok(Config {
            profile,
            redis_url,
            listen,
            data_dir,
            database_url,
            migrate_database_url,
            public_url,
            signup,
            allow_open_signup,
            master_key: self.secrets.remove("master_key"),
            jwt_alg,
            signing_key_file,
            jwt_secret: self.secrets.remove("jwt_secret"),
            body_limit,
            request_timeout,
            header_read_timeout: listeners.header_read_timeout,
            tls: listeners.tls,
            behind_tls_proxy: listeners.behind_tls_proxy,
            http_redirect_listen: listeners.http_redirect_listen,
            acme_challenge_dir: listeners.acme_challenge_dir,
            log_json,
            refresh_reuse_grace,
            trusted_proxies,
            trusted_proxies_set,
            tenant_domain,
            cors_origins,
            redirect_allowlist,
            platform_owners,
            record_max_bytes,
            import_max_bytes,
            import_max_rows,
            webhook_allow_private,
            webhook_ca_file,
            audit_retention_min_days,
            audit_platform_retention_days,
            admin_listen,
            admin_allow_remote,
            alerts,
        })
    }
}

/// A count in `range`, or `default` when unset.
fn parse_size(
    raw: &Raw,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    match raw.get(name) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                invalid(
                    name,
                    s,
                    &format!("a number from {} to {}", range.start(), range.end()),
                )
            }),
    }
}

pub(super) fn parse_bool(raw: &Raw, name: &str) -> Result<Option<bool>, ConfigError> {
    match raw.get(name) {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(other) => Err(invalid(name, other, "true or false")),
    }
}

pub(super) fn invalid(name: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        name: format!("STOCKADE_{}", name.to_uppercase()),
        reason: format!("`{value}` is not valid: expected {expected}"),
    }
}
