//! Typed configuration: `STOCKADE_*` environment variables over an optional TOML
//! file. Every secret may also be given as `STOCKADE_<NAME>_FILE` (both set is an
//! error). Secrets are held in [`SecretString`] and never printed.
//!
//! One struct, validated once, passed explicitly — no global config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod database;
mod retention;

pub use database::DatabaseUse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupMode {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlg {
    EdDsa,
    Hs256,
}

/// Where a secret comes from, kept so that messages can name the variable
/// without ever showing the value.
#[derive(Clone)]
pub struct Secret {
    pub value: SecretString,
    /// `STOCKADE_X` or the `STOCKADE_X_FILE` path it was read from.
    pub origin: String,
    /// The file it was read from, when given as `*_FILE`.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(*** from {})", self.origin)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` selects cluster mode; unset means embedded SQLite.
    /// On PostgreSQL: a login role that inherits `stockade_app` and owns
    /// nothing (`db::pg_roles`).
    pub database_url: Option<Secret>,
    /// PostgreSQL only: the schema owner, for migrations (`stockade migrate`,
    /// or `serve` before it starts serving, which then drops it).
    pub migrate_database_url: Option<Secret>,
    /// `redis://…`: in cluster mode, publishes revocations across instances
    /// so each can cache its session and API-key checks (`cache::cluster`).
    pub redis_url: Option<Secret>,
    pub public_url: Option<Url>,
    pub signup: SignupMode,
    /// The explicit flag production needs before signup may be open.
    pub allow_open_signup: bool,
    pub master_key: Option<Secret>,
    pub jwt_alg: JwtAlg,
    pub signing_key_file: Option<PathBuf>,
    pub jwt_secret: Option<Secret>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub log_json: bool,
    /// How long a rotated refresh token may be presented again and get a
    /// sibling token instead of revoking the session (0 = strict).
    pub refresh_reuse_grace: Duration,
    /// Peers whose `X-Forwarded-For` is believed (canonical ranges).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether `STOCKADE_TRUSTED_PROXIES` was given, as CIDRs or as `none`
    /// (no proxy): production needs it said.
    pub trusted_proxies_set: bool,
    /// With `example.com`, a request to `acme.example.com` must carry a
    /// credential of tenant `acme`.
    pub tenant_domain: Option<String>,
    /// Platform owners: user ids or emails (lower-cased) allowed on
    /// `/v1/platform/*`, besides `platform add-owner` grants; an email only
    /// for the account whose address is verified (`platform::owners`).
    pub platform_owners: Vec<String>,
    /// Largest record document (its `data` as JSON), bytes; above it 413.
    pub record_max_bytes: usize,
    /// Largest CSV import body, bytes (its route's body limit; 413 above).
    pub import_max_bytes: usize,
    /// Most data rows one CSV import may hold.
    pub import_max_rows: usize,
    /// Audit webhooks may target loopback, private, link-local and other
    /// non-public addresses (SSRF guard off). Default false.
    pub webhook_allow_private: bool,
    /// Extra PEM trust roots for audit webhook endpoints (a private CA).
    pub webhook_ca_file: Option<PathBuf>,
    /// No tenant's audit retention may be set below this many days (and no
    /// tenant's events are purged younger). See `config::retention`.
    pub audit_retention_min_days: i64,
    /// How many days the platform's own audit chain is kept.
    pub audit_platform_retention_days: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("{name} and {name}_FILE are both set; set only one")]
    BothSecretForms { name: String },
    #[error("cannot read {name}_FILE ({path}): {reason}")]
    SecretFile {
        name: String,
        path: String,
        reason: String,
    },
}

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
    "platform_owners",
    "record_max_bytes",
    "import_max_bytes",
    "import_max_rows",
    "redis_url",
    "webhook_allow_private",
    "webhook_ca_file",
    "audit_retention_min_days",
    "audit_platform_retention_days",
];
const SECRET_KEYS: &[&str] = &[
    "database_url",
    "migrate_database_url",
    "master_key",
    "jwt_secret",
    "redis_url",
];

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
pub const DEFAULT_RECORD_MAX_BYTES: usize = 256 * 1024;
pub const DEFAULT_IMPORT_MAX_BYTES: usize = 20 * 1024 * 1024;
pub const DEFAULT_IMPORT_MAX_ROWS: usize = 100_000;
/// HS256 secrets shorter than this are refused (SPEC §1: 512 bits); the
/// whole rule (encoded random bytes, entropy) is `crypto::hs256::check`.
pub const MIN_HS256_SECRET_BYTES: usize = crate::crypto::hs256::MIN_SECRET_BYTES;

impl Config {
    /// Loads from the process environment and an optional TOML file.
    pub fn from_env(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("STOCKADE_"))
            .collect();
        Self::load(config_file, &env)
    }

    /// Loads from the given environment map (tests pass their own) and an
    /// optional TOML file; environment wins over the file.
    pub fn load(
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = Raw::default();
        if let Some(path) = config_file {
            raw.read_toml(path)?;
        }
        raw.read_env(env)?;
        raw.into_config()
    }

    pub fn is_production(&self) -> bool {
        self.profile == Profile::Production
    }

    /// The URL clients use: the configured public URL, or `http://<listen>`.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Cluster mode: either database URL is `postgres://`.
    pub fn is_postgres(&self) -> bool {
        [&self.database_url, &self.migrate_database_url]
            .into_iter()
            .flatten()
            .any(|u| is_postgres_url(u.value.expose_secret()))
    }

    /// Problems that make this configuration unfit for production that can
    /// be seen without reading key files (those are checked by
    /// `crypto::keys`). One line each.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.public_url {
            None => problems.push(
                "STOCKADE_PUBLIC_URL is not set: production needs the https:// URL clients use"
                    .to_owned(),
            ),
            Some(url) if url.scheme() != "https" => problems.push(format!(
                "STOCKADE_PUBLIC_URL uses {}://: production needs an https:// URL",
                url.scheme()
            )),
            Some(_) => {}
        }
        if self.signup == SignupMode::Open && !self.allow_open_signup {
            problems.push(
                "STOCKADE_SIGNUP=open in production needs the explicit flag STOCKADE_ALLOW_OPEN_SIGNUP=true"
                    .to_owned(),
            );
        }
        if self.master_key.is_none() {
            problems.push(
                "STOCKADE_MASTER_KEY_FILE is not set: production needs a master key (32 random bytes, base64)"
                    .to_owned(),
            );
        }
        match self.jwt_alg {
            JwtAlg::EdDsa if self.signing_key_file.is_none() => problems.push(
                "STOCKADE_SIGNING_KEY_FILE is not set: production needs an Ed25519 signing key (PKCS#8 PEM)"
                    .to_owned(),
            ),
            JwtAlg::Hs256 => match &self.jwt_secret {
                None => problems.push(
                    "STOCKADE_JWT_SECRET_FILE is not set: HS256 needs a secret of at least 512 bits"
                        .to_owned(),
                ),
                Some(s) => {
                    if let Some(problem) = crate::crypto::hs256::problem(s) {
                        problems.push(problem);
                    }
                }
            },
            JwtAlg::EdDsa => {}
        }
        if let Some(email) = self
            .platform_owners
            .iter()
            .find(|o| uuid::Uuid::parse_str(o).is_err())
        {
            problems.push(format!(
                "STOCKADE_PLATFORM_OWNERS lists an email address ({email}): an email makes its account an owner only once verified, and production cannot deliver verification emails yet (no SMTP sender: issue #21); list user ids, or grant with `stockade platform add-owner`"
            ));
        }
        problems.extend(self.database_tls_problems());
        if !self.trusted_proxies_set {
            problems.push(
                "STOCKADE_TRUSTED_PROXIES is not set: production needs it said, as the CIDRs of the proxies in front of Stockade or `none` when clients connect directly (behind an unlisted proxy every client shares the proxy's address)"
                    .to_owned(),
            );
        }
        if cfg!(feature = "bench") {
            problems.push(
                "this binary was built with the `bench` feature (benchmark routes without authentication): never run it in production"
                    .to_owned(),
            );
        }
        problems
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Raw string values gathered from file then environment.
#[derive(Default)]
struct Raw {
    values: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl Raw {
    fn read_toml(&mut self, path: &Path) -> Result<(), ConfigError> {
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

    fn read_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
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

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn into_config(mut self) -> Result<Config, ConfigError> {
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
            log_json,
            refresh_reuse_grace,
            trusted_proxies,
            trusted_proxies_set,
            tenant_domain,
            platform_owners,
            record_max_bytes,
            import_max_bytes,
            import_max_rows,
            webhook_allow_private,
            webhook_ca_file,
            audit_retention_min_days,
            audit_platform_retention_days,
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

fn parse_bool(raw: &Raw, name: &str) -> Result<Option<bool>, ConfigError> {
    match raw.get(name) {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(other) => Err(invalid(name, other, "true or false")),
    }
}

fn invalid(name: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        name: format!("STOCKADE_{}", name.to_uppercase()),
        reason: format!("`{value}` is not valid: expected {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded_development() {
        let cfg = Config::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.profile, Profile::Development);
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.data_dir, PathBuf::from("stockade-data"));
        assert!(!cfg.is_postgres());
        assert_eq!(cfg.signup, SignupMode::Open);
        assert_eq!(cfg.body_limit, 1024 * 1024);
        assert_eq!(cfg.record_max_bytes, 256 * 1024);
        assert_eq!(cfg.import_max_bytes, 20 * 1024 * 1024);
        assert_eq!(cfg.import_max_rows, 100_000);
        assert!(!cfg.webhook_allow_private);
        assert_eq!(cfg.webhook_ca_file, None);
    }

    #[test]
    fn webhook_settings_parse() {
        let cfg = Config::load(
            None,
            &env(&[
                ("STOCKADE_WEBHOOK_ALLOW_PRIVATE", "true"),
                ("STOCKADE_WEBHOOK_CA_FILE", "/etc/stockade/siem-ca.pem"),
            ]),
        )
        .unwrap();
        assert!(cfg.webhook_allow_private);
        assert_eq!(
            cfg.webhook_ca_file,
            Some(PathBuf::from("/etc/stockade/siem-ca.pem"))
        );
        assert!(Config::load(None, &env(&[("STOCKADE_WEBHOOK_ALLOW_PRIVATE", "maybe")])).is_err());
    }

    #[test]
    fn redis_url_is_a_secret_and_must_be_redis() {
        let cfg = Config::load(
            None,
            &env(&[("STOCKADE_REDIS_URL", "redis://:pw@127.0.0.1:6379")]),
        )
        .unwrap();
        let url = cfg.redis_url.as_ref().unwrap();
        assert_eq!(url.value.expose_secret(), "redis://:pw@127.0.0.1:6379");
        assert!(!format!("{cfg:?}").contains(":pw@"));
        let err = Config::load(None, &env(&[("STOCKADE_REDIS_URL", "http://x")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert!(Config::load(None, &env(&[])).unwrap().redis_url.is_none());
    }

    #[test]
    fn production_defaults_to_closed_signup() {
        let cfg = Config::load(None, &env(&[("STOCKADE_PROFILE", "production")])).unwrap();
        assert_eq!(cfg.signup, SignupMode::Closed);
    }

    #[test]
    fn production_lists_every_problem_on_its_own_line() {
        let cfg = Config::load(
            None,
            &env(&[
                ("STOCKADE_PROFILE", "production"),
                ("STOCKADE_PUBLIC_URL", "http://app.example.com"),
                ("STOCKADE_SIGNUP", "open"),
                ("STOCKADE_JWT_ALG", "HS256"),
                ("STOCKADE_JWT_SECRET", "short-secret"),
            ]),
        )
        .unwrap();
        let problems = cfg.production_problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("http://"));
        assert!(problems[1].contains("STOCKADE_ALLOW_OPEN_SIGNUP"));
        assert!(problems[2].contains("master key"));
        assert!(problems[3].contains("shorter than 512 bits"));
        assert!(problems[4].contains("STOCKADE_TRUSTED_PROXIES"));
        assert!(problems.iter().all(|p| !p.contains("short-secret")));
    }

    #[test]
    fn open_signup_with_explicit_flag_is_accepted() {
        let cfg = Config::load(
            None,
            &env(&[
                ("STOCKADE_PROFILE", "production"),
                ("STOCKADE_PUBLIC_URL", "https://app.example.com"),
                ("STOCKADE_SIGNUP", "open"),
                ("STOCKADE_ALLOW_OPEN_SIGNUP", "true"),
                ("STOCKADE_MASTER_KEY", "x"),
                ("STOCKADE_SIGNING_KEY_FILE", "/k.pem"),
                ("STOCKADE_TRUSTED_PROXIES", "none"),
            ]),
        )
        .unwrap();
        assert!(cfg.production_problems().is_empty());
    }

    #[test]
    fn production_needs_trusted_proxies_said_and_none_means_no_proxy() {
        let base = [
            ("STOCKADE_PROFILE", "production"),
            ("STOCKADE_PUBLIC_URL", "https://app.example.com"),
            ("STOCKADE_MASTER_KEY", "x"),
            ("STOCKADE_SIGNING_KEY_FILE", "/k.pem"),
        ];
        let unset = Config::load(None, &env(&base)).unwrap();
        assert!(!unset.trusted_proxies_set);
        let problems = unset.production_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("STOCKADE_TRUSTED_PROXIES is not set"));
        for value in ["none", " NONE ", "10.0.0.0/8"] {
            let with = [base.as_slice(), &[("STOCKADE_TRUSTED_PROXIES", value)]].concat();
            let cfg = Config::load(None, &env(&with)).unwrap();
            assert!(cfg.trusted_proxies_set, "{value}");
            assert!(cfg.production_problems().is_empty(), "{value}");
            assert_eq!(
                cfg.trusted_proxies.is_empty(),
                value.trim().eq_ignore_ascii_case("none")
            );
        }
        for bad in [" ", "none,10.0.0.0/8", "nobody"] {
            let err = Config::load(None, &env(&[("STOCKADE_TRUSTED_PROXIES", bad)])).unwrap_err();
            assert!(err.to_string().contains("or none"), "{bad}: {err}");
        }
        // Empty is unset, as for every setting.
        let empty = [base.as_slice(), &[("STOCKADE_TRUSTED_PROXIES", "")]].concat();
        let cfg = Config::load(None, &env(&empty)).unwrap();
        assert!(!cfg.trusted_proxies_set && cfg.production_problems().len() == 1);
        // Development does not insist.
        let dev = Config::load(None, &env(&[])).unwrap();
        assert!(!dev.trusted_proxies_set && dev.production_problems().len() > 1);
    }

    #[test]
    fn secret_and_its_file_form_together_are_refused() {
        let err = Config::load(
            None,
            &env(&[
                ("STOCKADE_MASTER_KEY", "a"),
                ("STOCKADE_MASTER_KEY_FILE", "/tmp/k"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::BothSecretForms {
                name: "STOCKADE_MASTER_KEY".into()
            }
        );
    }

    #[test]
    fn secrets_are_read_from_files_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2-very-secret\n").unwrap();
        let cfg = Config::load(
            None,
            &env(&[("STOCKADE_JWT_SECRET_FILE", path.to_str().unwrap())]),
        )
        .unwrap();
        let secret = cfg.jwt_secret.as_ref().unwrap();
        assert_eq!(secret.value.expose_secret(), "hunter2-very-secret");
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn unknown_settings_and_bad_values_are_refused() {
        assert!(Config::load(None, &env(&[("STOCKADE_LISTN", "x")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_LISTEN", "nope")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_PROFILE", "prod")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_BODY_LIMIT", "-1")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_DATABASE_URL", "mysql://x")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_REFRESH_REUSE_GRACE", "31")])).is_err());
        assert!(Config::load(None, &env(&[("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/33")])).is_err());
    }

    #[test]
    fn grace_and_trusted_proxies() {
        let cfg = Config::load(
            None,
            &env(&[
                ("STOCKADE_REFRESH_REUSE_GRACE", "30"),
                ("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.refresh_reuse_grace, Duration::from_secs(30));
        assert_eq!(cfg.trusted_proxies.len(), 3);
        assert!(cfg.trusted_proxies[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        // A range written IPv4-mapped is kept as the IPv4 range.
        let cfg = Config::load(
            None,
            &env(&[("STOCKADE_TRUSTED_PROXIES", "::ffff:10.0.0.0/104")]),
        )
        .unwrap();
        assert_eq!(
            cfg.trusted_proxies,
            ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
        );
    }

    #[test]
    fn toml_file_is_read_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockade.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nbody_limit = 4096\n").unwrap();
        let cfg = Config::load(Some(&path), &env(&[("STOCKADE_BODY_LIMIT", "8192")])).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.body_limit, 8192);
        std::fs::write(&path, "lisen = 1\n").unwrap();
        assert!(Config::load(Some(&path), &env(&[])).is_err());
        std::fs::write(&path, "listen = [\n").unwrap();
        assert!(Config::load(Some(&path), &env(&[])).is_err());
    }
}
