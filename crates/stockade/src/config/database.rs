//! The database URLs (SPEC §1, cluster mode): `STOCKADE_DATABASE_URL` for the
//! serving login role, `STOCKADE_MIGRATE_DATABASE_URL` for the schema owner.
//! Everything here is checked without connecting; what needs the server
//! (the role's attributes and memberships) is `db::pg_roles`.

use std::net::IpAddr;
use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{Config, ConfigError, Secret, is_postgres_url};

/// What a command needs the database for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseUse {
    /// `serve` and every command that works as the serving role.
    Serve,
    /// `stockade migrate`: the owner.
    Migrate,
}

/// At load: every `postgres://` URL parses (an error names the variable,
/// never the URL), and the migrate URL is a `postgres://` URL, in cluster
/// mode only.
pub(super) fn check_urls(
    database_url: Option<&Secret>,
    migrate_url: Option<&Secret>,
) -> Result<(), ConfigError> {
    for secret in [database_url, migrate_url].into_iter().flatten() {
        let url = secret.value.expose_secret();
        if is_postgres_url(url)
            && let Err(e) = PgConnectOptions::from_str(url)
        {
            let cause = match e {
                sqlx::Error::Configuration(cause) => cause.to_string(),
                _ => "malformed".to_owned(),
            };
            return Err(ConfigError::Invalid {
                name: secret.origin.clone(),
                reason: format!("not a valid PostgreSQL URL: {cause}"),
            });
        }
    }
    let Some(migrate) = migrate_url else {
        return Ok(());
    };
    if !is_postgres_url(migrate.value.expose_secret()) {
        return Err(ConfigError::Invalid {
            name: migrate.origin.clone(),
            reason: "expected a postgres:// URL (the schema owner's)".to_owned(),
        });
    }
    if let Some(db) = database_url
        && !is_postgres_url(db.value.expose_secret())
    {
        return Err(ConfigError::Invalid {
            name: migrate.origin.clone(),
            reason: format!(
                "is for PostgreSQL only, but {} is not a postgres:// URL",
                db.origin
            ),
        });
    }
    Ok(())
}

/// The parts of a PostgreSQL URL worth naming (never its password).
struct Target {
    origin: String,
    user: String,
    host: String,
    local: bool,
    port: u16,
    database: String,
    ssl_mode: PgSslMode,
    root_cert: Option<String>,
}

impl Target {
    fn parse(secret: &Secret) -> Option<Self> {
        let url = secret.value.expose_secret();
        if !is_postgres_url(url) {
            return None;
        }
        let opts = PgConnectOptions::from_str(url).ok()?;
        let socket = opts.get_socket().is_some();
        let host = opts
            .get_host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let local = socket
            || host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let root_cert = url::Url::parse(url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "sslrootcert")
                .map(|(_, v)| v.into_owned())
        });
        Some(Self {
            origin: secret.origin.clone(),
            user: opts.get_username().to_owned(),
            host: match opts.get_socket() {
                Some(path) => path.display().to_string(),
                None => host.to_owned(),
            },
            local,
            port: opts.get_port(),
            database: opts.get_database().unwrap_or_default().to_owned(),
            ssl_mode: opts.get_ssl_mode(),
            root_cert,
        })
    }

    fn describe(&self) -> String {
        format!(
            "`{}` at {}:{}/{} (sslmode={})",
            self.user,
            self.host,
            self.port,
            self.database,
            ssl_mode_name(self.ssl_mode)
        )
    }
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

impl Config {
    fn targets(&self) -> (Option<Target>, Option<Target>) {
        (
            self.database_url.as_ref().and_then(Target::parse),
            self.migrate_database_url.as_ref().and_then(Target::parse),
        )
    }

    /// What makes the database settings unfit for `purpose`, in any
    /// profile, one line each (production's TLS rule is
    /// [`Config::production_problems`]).
    pub fn database_problems(&self, purpose: DatabaseUse) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.is_postgres() {
            return problems;
        }
        let (serve, migrate) = self.targets();
        match purpose {
            DatabaseUse::Serve if self.database_url.is_none() => problems.push(
                "STOCKADE_DATABASE_URL is not set: the server connects as a login role that \
                 inherits stockade_app and owns nothing (STOCKADE_MIGRATE_DATABASE_URL, the \
                 owner's, is for migrations only; `stockade migrate` prints how to create the role)"
                    .to_owned(),
            ),
            DatabaseUse::Migrate if self.migrate_database_url.is_none() => problems.push(
                "STOCKADE_MIGRATE_DATABASE_URL is not set: `stockade migrate` on PostgreSQL runs \
                 as the schema owner, not as the serving role of STOCKADE_DATABASE_URL"
                    .to_owned(),
            ),
            _ => {}
        }
        if let (Some(s), Some(m)) = (&serve, &migrate) {
            if s.user == m.user {
                problems.push(format!(
                    "{} and {} both log in as `{}`: the server must not connect as the owner; \
                     give it a login role that inherits stockade_app",
                    s.origin, m.origin, s.user
                ));
            }
            if (&s.host, s.port, &s.database) != (&m.host, m.port, &m.database) {
                problems.push(format!(
                    "{} names {}:{}/{} but {} names {}:{}/{}: both must be the same database",
                    s.origin, s.host, s.port, s.database, m.origin, m.host, m.port, m.database
                ));
            }
        }
        for t in [&serve, &migrate].into_iter().flatten() {
            if let Some(path) = &t.root_cert
                && let Err(e) = std::fs::metadata(path)
            {
                problems.push(format!(
                    "{}: cannot read its sslrootcert {path}: {e}",
                    t.origin
                ));
            }
        }
        problems
    }

    /// Production: a PostgreSQL that is not on this machine is reached only
    /// over TLS that checks its certificate and name (`sslmode=verify-full`).
    pub fn database_tls_problems(&self) -> Vec<String> {
        let (serve, migrate) = self.targets();
        [serve, migrate]
            .into_iter()
            .flatten()
            .filter(|t| !t.local && !matches!(t.ssl_mode, PgSslMode::VerifyFull))
            .map(|t| {
                format!(
                    "{} reaches PostgreSQL at {} with sslmode={}: production needs \
                     sslmode=verify-full (TLS, certificate and host name checked; add \
                     sslrootcert=<CA file> for a private CA) for a server that is not on this machine",
                    t.origin,
                    t.host,
                    ssl_mode_name(t.ssl_mode)
                )
            })
            .collect()
    }

    /// The role `STOCKADE_DATABASE_URL` logs in as (PostgreSQL).
    pub fn serving_role_name(&self) -> Option<String> {
        self.targets().0.map(|t| t.user)
    }

    /// `config check`'s lines on the database (no password, no connection).
    pub fn database_summary(&self) -> Vec<String> {
        if !self.is_postgres() {
            return match &self.database_url {
                Some(_) => vec!["database: SQLite (STOCKADE_DATABASE_URL)".to_owned()],
                None => vec![format!(
                    "database: embedded SQLite in {}",
                    self.data_dir.join("stockade.db").display()
                )],
            };
        }
        let (serve, migrate) = self.targets();
        let mut lines = Vec::new();
        if let Some(s) = serve {
            lines.push(format!("database: the server connects as {}", s.describe()));
        }
        lines.push(match migrate {
            Some(m) => format!(
                "database: migrations run as {}, by `stockade migrate` and by `serve` before it serves",
                m.describe()
            ),
            None => "database: STOCKADE_MIGRATE_DATABASE_URL is not set: `serve` applies no \
                     migration and refuses to start unless they are current (run `stockade \
                     migrate` with the owner's URL)"
                .to_owned(),
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::load_pairs as load;

    const APP: &str = "postgres://stockade_login:pw-app@db.internal:5432/stockade";
    const OWNER: &str = "postgres://stockade_owner:pw-owner@db.internal:5432/stockade";

    #[test]
    fn the_migrate_url_is_postgres_only() {
        let err = load(&[("STOCKADE_MIGRATE_DATABASE_URL", "sqlite:x.db")]).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
        let err = load(&[
            ("STOCKADE_DATABASE_URL", "sqlite:x.db"),
            ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PostgreSQL only"), "{err}");
        let cfg = load(&[("STOCKADE_MIGRATE_DATABASE_URL", OWNER)]).unwrap();
        assert!(cfg.is_postgres());
        assert!(!format!("{cfg:?}").contains("pw-owner"));
        let err = load(&[(
            "STOCKADE_DATABASE_URL",
            "postgres://u:pw-secret@db/s?sslmode=sometimes",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("STOCKADE_DATABASE_URL: not a valid PostgreSQL URL"),
            "{err}"
        );
        assert!(!err.contains("pw-secret"), "{err}");
    }

    #[test]
    fn each_command_names_the_url_it_lacks() {
        let only_owner = load(&[("STOCKADE_MIGRATE_DATABASE_URL", OWNER)]).unwrap();
        assert!(
            only_owner
                .database_problems(DatabaseUse::Migrate)
                .is_empty()
        );
        let p = only_owner.database_problems(DatabaseUse::Serve);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("STOCKADE_DATABASE_URL is not set"),
            "{p:?}"
        );

        let only_app = load(&[("STOCKADE_DATABASE_URL", APP)]).unwrap();
        assert!(only_app.database_problems(DatabaseUse::Serve).is_empty());
        let p = only_app.database_problems(DatabaseUse::Migrate);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("STOCKADE_MIGRATE_DATABASE_URL is not set"),
            "{p:?}"
        );

        let both = load(&[
            ("STOCKADE_DATABASE_URL", APP),
            ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
        ])
        .unwrap();
        assert!(both.database_problems(DatabaseUse::Serve).is_empty());
        assert!(both.database_problems(DatabaseUse::Migrate).is_empty());
        assert!(
            load(&[])
                .unwrap()
                .database_problems(DatabaseUse::Serve)
                .is_empty()
        );
    }

    #[test]
    fn odd_pairs_of_urls_are_named_without_passwords() {
        let same_user = load(&[
            ("STOCKADE_DATABASE_URL", OWNER),
            ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
        ])
        .unwrap();
        let p = same_user.database_problems(DatabaseUse::Serve);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("both log in as `stockade_owner`"), "{p:?}");
        let elsewhere = load(&[
            ("STOCKADE_DATABASE_URL", APP),
            (
                "STOCKADE_MIGRATE_DATABASE_URL",
                "postgres://stockade_owner:pw-owner@db.internal:5432/other",
            ),
        ])
        .unwrap();
        let p = elsewhere.database_problems(DatabaseUse::Migrate);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("same database"), "{p:?}");
        let missing_ca = load(&[(
            "STOCKADE_DATABASE_URL",
            "postgres://u@db.internal/s?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )])
        .unwrap();
        let p = missing_ca.database_problems(DatabaseUse::Serve);
        assert!(
            p.len() == 1 && p[0].contains("/nonexistent/ca.pem"),
            "{p:?}"
        );
        for line in same_user
            .database_problems(DatabaseUse::Serve)
            .iter()
            .chain(&elsewhere.database_problems(DatabaseUse::Serve))
            .chain(&same_user.database_summary())
        {
            assert!(!line.contains("pw-"), "{line}");
        }
    }

    #[test]
    fn production_needs_verify_full_to_a_remote_postgres() {
        let production = |url: &str| {
            load(&[
                ("STOCKADE_PROFILE", "production"),
                ("STOCKADE_DATABASE_URL", url),
            ])
            .unwrap()
            .database_tls_problems()
        };
        for url in [
            "postgres://u@db.internal/s",
            "postgres://u@db.internal/s?sslmode=disable",
            "postgres://u@db.internal/s?sslmode=prefer",
            "postgres://u@db.internal/s?sslmode=require",
            "postgres://u@10.1.2.3/s?sslmode=verify-ca",
            "postgres://u@[2001:db8::1]/s?sslmode=require",
        ] {
            let p = production(url);
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert!(p[0].contains("sslmode=verify-full"), "{p:?}");
        }
        for url in [
            "postgres://u@db.internal/s?sslmode=verify-full",
            "postgres://u@db.internal/s?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u@127.0.0.1/s",
            "postgres://u@localhost/s?sslmode=disable",
            "postgres://u@[::1]:5432/s",
            "postgres:///s?host=/var/run/postgresql",
        ] {
            assert!(production(url).is_empty(), "{url}: {:?}", production(url));
        }
        // The owner's URL too, and it is part of the production verdict.
        let cfg = load(&[
            ("STOCKADE_PROFILE", "production"),
            (
                "STOCKADE_DATABASE_URL",
                "postgres://u@db.internal/s?sslmode=verify-full",
            ),
            (
                "STOCKADE_MIGRATE_DATABASE_URL",
                "postgres://o@db.internal/s",
            ),
        ])
        .unwrap();
        let p = cfg.production_problems();
        assert_eq!(
            p.iter().filter(|l| l.contains("sslmode")).count(),
            1,
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("STOCKADE_MIGRATE_DATABASE_URL reaches"))
        );
    }
}
