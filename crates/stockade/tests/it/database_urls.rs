//! `stockade config check` and `stockade migrate` on the database URLs an
//! operator may get wrong (SPEC §1): the owner's login handed to the server,
//! a missing URL, two databases, plain text to a remote PostgreSQL in
//! production. Each is one clear line and exit 2; no password is ever shown.

use std::path::Path;
use std::process::Output;

use crate::cli::{production_env, run, stockade};

const LOGIN: &str = "postgres://stockade_login:pw-login-1@127.0.0.1:5432/stockade";
const OWNER: &str = "postgres://stockade_owner:pw-owner-2@127.0.0.1:5432/stockade";

fn check(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = stockade(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn errors(out: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!text.contains("pw-"), "a password was printed: {text}");
    text.lines()
        .filter(|l| !l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn config_check_explains_missing_and_odd_database_urls() {
    let dir = tempfile::tempdir().unwrap();
    for (env, needle) in [
        // The owner's URL alone: the server has no role to connect as.
        (
            vec![("STOCKADE_MIGRATE_DATABASE_URL", OWNER)],
            "error: STOCKADE_DATABASE_URL is not set",
        ),
        // The owner's login given to the server.
        (
            vec![
                ("STOCKADE_DATABASE_URL", OWNER),
                ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
            ],
            "both log in as `stockade_owner`",
        ),
        // Two databases.
        (
            vec![
                ("STOCKADE_DATABASE_URL", LOGIN),
                (
                    "STOCKADE_MIGRATE_DATABASE_URL",
                    "postgres://stockade_owner:pw-owner-2@127.0.0.1:5432/elsewhere",
                ),
            ],
            "both must be the same database",
        ),
        // An owner's URL for SQLite makes no sense.
        (
            vec![
                ("STOCKADE_DATABASE_URL", "sqlite:stockade.db"),
                ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
            ],
            "is for PostgreSQL only",
        ),
        (
            vec![("STOCKADE_MIGRATE_DATABASE_URL", "mysql://root@db/x")],
            "expected a postgres:// URL",
        ),
        (
            vec![(
                "STOCKADE_DATABASE_URL",
                "postgres://u:pw-x@db/s?sslmode=maybe",
            )],
            "not a valid PostgreSQL URL",
        ),
    ] {
        let out = check(dir.path(), &["config", "check"], &env);
        let lines = errors(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{env:?}: {lines:?}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{lines:?}"
        );
    }

    // A sound pair: OK, and the verdict says who does what (no password).
    let out = check(
        dir.path(),
        &["config", "check"],
        &[
            ("STOCKADE_DATABASE_URL", LOGIN),
            ("STOCKADE_MIGRATE_DATABASE_URL", OWNER),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{:?}", errors(&out));
    assert!(!said.contains("pw-"), "{said}");
    assert!(said.contains("database=postgres"), "{said}");
    assert!(
        said.contains("the server connects as `stockade_login` at 127.0.0.1:5432/stockade"),
        "{said}"
    );
    assert!(
        said.contains("migrations run as `stockade_owner`"),
        "{said}"
    );
    // Without the owner's URL, it says serve will not migrate.
    let out = check(
        dir.path(),
        &["config", "check"],
        &[("STOCKADE_DATABASE_URL", LOGIN)],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{:?}", errors(&out));
    assert!(said.contains("`serve` applies no migration"), "{said}");
}

#[test]
fn migrate_needs_the_owners_url_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        dir.path(),
        &["migrate"],
        &[("STOCKADE_DATABASE_URL", LOGIN)],
    );
    let lines = errors(&out);
    assert_eq!(out.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error: STOCKADE_MIGRATE_DATABASE_URL is not set"),
        "{lines:?}"
    );
}

/// Production reaches a PostgreSQL on another machine only with
/// `sslmode=verify-full`, for the server's URL and the owner's alike.
#[test]
fn production_refuses_plain_text_to_a_remote_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let prod = production_env(dir.path());
    let prod: Vec<(&str, &str)> = prod.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = prod.clone();
        env.extend_from_slice(extra);
        env
    };
    let remote_login = "postgres://stockade_login:pw-1@db.internal:5432/stockade";
    let remote_owner = "postgres://stockade_owner:pw-2@db.internal:5432/stockade?sslmode=require";
    for (cmd, env) in [
        (
            vec!["config", "check"],
            with(&[("STOCKADE_DATABASE_URL", remote_login)]),
        ),
        (
            vec!["serve"],
            with(&[("STOCKADE_DATABASE_URL", remote_login)]),
        ),
        (
            vec!["migrate"],
            with(&[
                (
                    "STOCKADE_DATABASE_URL",
                    "postgres://stockade_login@db.internal/stockade?sslmode=verify-full",
                ),
                ("STOCKADE_MIGRATE_DATABASE_URL", remote_owner),
            ]),
        ),
    ] {
        let out = check(dir.path(), &cmd, &env);
        let lines = errors(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{cmd:?}: {lines:?}");
        assert!(
            lines[0].contains("production needs sslmode=verify-full"),
            "{lines:?}"
        );
        assert!(lines[0].contains("db.internal"), "{lines:?}");
    }
    // verify-full to the remote host, or a local server: fit.
    for url in [
        "postgres://stockade_login@db.internal:5432/stockade?sslmode=verify-full",
        "postgres://stockade_login@127.0.0.1:5432/stockade",
    ] {
        let out = check(
            dir.path(),
            &["config", "check"],
            &with(&[("STOCKADE_DATABASE_URL", url)]),
        );
        assert!(out.status.success(), "{url}: {:?}", errors(&out));
    }
}
