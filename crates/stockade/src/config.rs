//! Typed configuration: `STOCKADE_*` environment variables over an optional TOML
//! file. Every secret may also be given as `STOCKADE_<NAME>_FILE` (both set is an
//! error). Secrets are held in [`SecretString`] and never printed.
//!
//! One struct, validated once, passed explicitly — no global config. This
//! file holds the types and the entry points; the values are gathered by
//! `config/sources.rs`, parsed and bounded by `config/parse.rs`, judged for
//! production by `config/production.rs` (database URLs: `config/database.rs`;
//! audit retention: `config/retention.rs`; the admin listener and alert
//! thresholds: `config/ops.rs`; listeners and TLS: `config/tls.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod database;
mod ops;
mod parse;
mod production;
mod retention;
mod sources;
mod tls;
mod web;

pub use database::DatabaseUse;
use parse::invalid;
use sources::Raw;
pub use tls::{DEFAULT_HEADER_READ_TIMEOUT, TlsFiles};

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
    /// How long a client has to send a request's headers, and to finish a
    /// TLS handshake; also how long a keep-alive connection may stay idle
    /// (`http::listener`).
    pub header_read_timeout: Duration,
    /// The certificate chain and key the listener serves HTTPS with
    /// (`http::tls`); `None` is plain HTTP.
    pub tls: Option<TlsFiles>,
    /// A proxy in front terminates TLS: production may then listen in
    /// plain HTTP off loopback, and a request a trusted proxy says came over
    /// `http` gets a 308 to the public URL (`http::scheme`).
    pub behind_tls_proxy: bool,
    /// The plain-HTTP listener that answers 308 to the public URL
    /// (`http::redirector`).
    pub http_redirect_listen: Option<SocketAddr>,
    /// The webroot the redirector serves `/.well-known/acme-challenge/<token>`
    /// from (certbot's `--webroot -w`).
    pub acme_challenge_dir: Option<PathBuf>,
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
    /// Exact origins whose pages may call the API from a browser (CORS;
    /// default none). See `config::web`.
    pub cors_origins: Vec<stockade_core::web::WebOrigin>,
    /// Where links and redirects may point: the public URL and
    /// `STOCKADE_REDIRECT_ALLOWLIST`.
    pub redirect_allowlist: stockade_core::web::RedirectAllowlist,
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
    /// Where `/metrics` is served (`ops::admin`); `None` when `off`. Never
    /// the public listener's address (`config/ops.rs`).
    pub admin_listen: Option<SocketAddr>,
    /// Production may put the admin listener on a non-loopback address.
    pub admin_allow_remote: bool,
    /// The alert thresholds (`STOCKADE_ALERT_*`, `ops::alerts`).
    pub alerts: stockade_core::alerts::Settings,
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
}

/// A configuration from `STOCKADE_*` pairs alone (no file): the one loader
/// the settings' unit tests share.
#[cfg(test)]
pub(crate) fn load_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(None, &env)
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
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
