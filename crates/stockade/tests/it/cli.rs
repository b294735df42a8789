//! The `stockade` binary as an operator runs it: help, one-line errors,
//! the production refusals, `serve` with zero configuration, migrations and
//! `tenant create`; and the fixtures for running the binary (`stockade`,
//! `run`, `start_capturing`, `production_env`, `sqlite_conn`, ...) that
//! other files use. Key commands are `cli_keys.rs`, user import
//! `cli_import.rs`, secrets kept out of files and logs `cli_secrets.rs`;
//! this file must not duplicate their tests.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;

const BIN: &str = env!("CARGO_BIN_EXE_stockade");

/// The binary with a clean environment (no STOCKADE_* from the caller).
pub fn stockade(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

pub(crate) fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('{')) // JSON log lines
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["config", "check", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["keys", "status", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "retire", "--help"],
        vec!["users", "import", "--help"],
        vec!["users", "delete", "--help"],
    ] {
        let out = run(stockade(dir.path()).args(&args));
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    for (args, code) in [
        (vec!["bogus"], 2),
        (
            vec!["tenant", "create", "--slug", "Not Valid", "--name", "x"],
            1,
        ),
        (vec!["tenant", "create", "--slug", "acme"], 2),
        (vec!["keys", "retire"], 2),
        (vec!["users", "import", "users.csv"], 2),
        (
            vec!["users", "import", "missing.csv", "--tenant", "acme"],
            1,
        ),
    ] {
        let out = run(stockade(dir.path()).args(&args));
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("error:"), "{lines:?}");
    }
    let out = run(stockade(dir.path())
        .args(["config", "check"])
        .env("STOCKADE_LISTEN", "nowhere"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr_lines(&out).len(), 1);
}

#[test]
fn tenant_create_then_audit_verify_and_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        stockade(dir.path()).args(["tenant", "create", "--slug", "acme", "--name", "Acme Ltd"])
    );
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created tenant acme"));
    let out =
        run(stockade(dir.path()).args(["tenant", "create", "--slug", "acme", "--name", "Again"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_lines(&out)[0].contains("already exists"));

    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("events=1 head_seq=1"));

    // Edit the event in the database file directly.
    let db = dir.path().join("stockade-data/stockade.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // With the file, one can open the append-only gate (migration 0016).
        sqlx::raw_sql(
            "UPDATE audit_purge_gate SET open = 1; \
             UPDATE audit_events SET details = '{\"slug\":\"evil\"}' WHERE seq = 1; \
             UPDATE audit_purge_gate SET open = 0;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("broken at seq 1"), "{lines:?}");
}

#[test]
fn production_refuses_each_problem_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    // Everything wrong at once: one line per problem.
    for cmd in ["serve", "config check"] {
        let out = run(stockade(dir.path())
            .args(cmd.split(' '))
            .env("STOCKADE_PROFILE", "production")
            .env("STOCKADE_PUBLIC_URL", "http://app.example.com")
            .env("STOCKADE_SIGNUP", "open"));
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 5, "{cmd}: {lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("error: ")));
        let all = lines.join("\n");
        for needle in [
            "http://",
            "STOCKADE_ALLOW_OPEN_SIGNUP",
            "master key",
            "STOCKADE_SIGNING_KEY_FILE",
            "STOCKADE_TRUSTED_PROXIES",
        ] {
            assert!(all.contains(needle), "{cmd}: {needle} not in {all}");
        }
    }
    // serve never started: no data directory was created.
    assert!(!dir.path().join("stockade-data").exists());

    // Development keys (generated by a development start) are refused.
    let dev = tempfile::tempdir().unwrap();
    let out = run(stockade(dev.path()).args(["config", "check"]));
    assert!(out.status.success());
    let out = run(stockade(dev.path()).args(["migrate"]));
    assert!(out.status.success());
    // `migrate` does not create keys; a development start does.
    let started = start(dev.path(), &[]);
    stop(started);
    let keys = dev.path().join("stockade-data/keys");
    let out = run(stockade(dev.path())
        .args(["config", "check"])
        .env("STOCKADE_PROFILE", "production")
        .env("STOCKADE_PUBLIC_URL", "https://app.example.com")
        .env("STOCKADE_TRUSTED_PROXIES", "none")
        .env("STOCKADE_MASTER_KEY_FILE", keys.join("master.key"))
        .env(
            "STOCKADE_SIGNING_KEY_FILE",
            keys.join("signing-ed25519.pem"),
        ));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("development key")));

    // A weak HS256 secret.
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "x".repeat(63)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let master = dir.path().join("master.key");
    std::fs::write(
        &master,
        base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
    )
    .unwrap();
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(stockade(dir.path())
        .args(["serve"])
        .env("STOCKADE_PROFILE", "production")
        .env("STOCKADE_PUBLIC_URL", "https://app.example.com")
        .env("STOCKADE_TRUSTED_PROXIES", "none")
        .env("STOCKADE_MASTER_KEY_FILE", &master)
        .env("STOCKADE_JWT_ALG", "HS256")
        .env("STOCKADE_JWT_SECRET_FILE", &secret));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("shorter than 512 bits"));
    assert!(!lines[0].contains("xxxx"));

    // With every problem fixed, the verdict is OK (64 random bytes, base64:
    // "x" × 64 is refused, see `hs256_secret.rs`).
    let mut random = [0u8; 64];
    getrandom::fill(&mut random).unwrap();
    std::fs::write(
        &secret,
        base64::engine::general_purpose::STANDARD.encode(random),
    )
    .unwrap();
    let out = run(stockade(dir.path())
        .args(["config", "check"])
        .env("STOCKADE_PROFILE", "production")
        .env("STOCKADE_PUBLIC_URL", "https://app.example.com")
        .env("STOCKADE_TRUSTED_PROXIES", "none")
        .env("STOCKADE_MASTER_KEY_FILE", &master)
        .env("STOCKADE_JWT_ALG", "HS256")
        .env("STOCKADE_JWT_SECRET_FILE", &secret));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("profile=production"));
}

pub struct Started {
    pub child: std::process::Child,
    pub url: String,
}

/// Starts `stockade serve` on a free port and waits for its URL line.
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Started {
    let mut cmd = stockade(dir);
    cmd.arg("serve")
        .env("STOCKADE_LISTEN", "127.0.0.1:0")
        .env("STOCKADE_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    Started { child, url }
}

pub fn stop(mut s: Started) -> std::process::ExitStatus {
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    s.child.wait().unwrap()
}

#[tokio::test]
async fn zero_config_serve_creates_data_and_keys_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let started = start(dir.path(), &[]);
    let res = reqwest::get(format!("{}/healthz", started.url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", started.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    let data = dir.path().join("stockade-data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("keys/master.key")), 0o600);
    assert_eq!(mode(&data.join("keys/signing-ed25519.pem")), 0o600);
    assert_eq!(mode(&data.join("stockade.db")), 0o600);
    let status = stop(started);
    assert!(status.success(), "{status:?}");
    // Keys persist across restarts.
    let before = std::fs::read(data.join("keys/master.key")).unwrap();
    let again = start(dir.path(), &[]);
    let res = reqwest::get(format!("{}/healthz", again.url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(stop(again).success());
    assert_eq!(before, std::fs::read(data.join("keys/master.key")).unwrap());
}

#[test]
fn default_listen_address_is_loopback_8080() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path()).args(["config", "check"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen=127.0.0.1:8080"));
}

#[tokio::test]
async fn migrate_and_tenant_create_on_postgres() {
    let Some((name, owner)) = crate::testkit::create_pg_database().await else {
        return;
    };
    let url = crate::testkit::pg_login_url(&name);
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path())
        .arg("migrate")
        .env("STOCKADE_MIGRATE_DATABASE_URL", &owner));
    let ok = out.status.success();
    let out2 = run(stockade(dir.path())
        .args(["tenant", "create", "--slug", "pg-acme", "--name", "PG Acme"])
        .env("STOCKADE_DATABASE_URL", &url));
    let out3 = run(stockade(dir.path())
        .args(["audit", "verify"])
        .env("STOCKADE_DATABASE_URL", &url));
    crate::testkit::drop_pg_database(&name);
    assert!(ok, "{:?}", stderr_lines(&out));
    assert!(out2.status.success(), "{:?}", stderr_lines(&out2));
    assert!(out3.status.success(), "{:?}", stderr_lines(&out3));
    assert!(String::from_utf8_lossy(&out3.stdout).contains("events=1"));
    // Embedded mode was not touched: no SQLite database (the data dir holds
    // only the development keys, which the new tenant's keys are wrapped by).
    assert!(!dir.path().join("stockade-data/stockade.db").exists());
    assert!(dir.path().join("stockade-data/keys/master.key").exists());
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn sqlite_conn(dir: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let db = dir.join("stockade-data/stockade.db");
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

pub fn create_tenant(dir: &Path, slug: &str) {
    let out = run(stockade(dir).args(["tenant", "create", "--slug", slug, "--name", "Imported"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
}

/// Like [`start`], with stderr written to `log` and stdout collected by a
/// thread (returned by it once the server has stopped).
pub fn start_capturing(
    dir: &Path,
    env: &[(&str, &str)],
    log: &Path,
) -> (Started, std::thread::JoinHandle<String>) {
    let mut cmd = stockade(dir);
    cmd.arg("serve")
        .env("STOCKADE_LISTEN", "127.0.0.1:0")
        .env("STOCKADE_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if all.is_empty() {
                let _ = first_tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let line = first_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (Started { child, url }, reader)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Production profile with real (non-development) keys in `dir`.
pub fn production_env(dir: &Path) -> Vec<(String, String)> {
    use base64::Engine;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let master = dir.join("master.key");
    std::fs::write(
        &master,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let signing = dir.join("signing.pem");
    let pem = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
        .to_pkcs8_pem(Default::default())
        .unwrap();
    std::fs::write(&signing, pem.as_bytes()).unwrap();
    for f in [&master, &signing] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    [
        ("STOCKADE_PROFILE", "production".to_owned()),
        ("STOCKADE_PUBLIC_URL", "https://app.example.test".to_owned()),
        ("STOCKADE_MASTER_KEY_FILE", master.display().to_string()),
        ("STOCKADE_SIGNING_KEY_FILE", signing.display().to_string()),
        ("STOCKADE_SIGNUP", "open".to_owned()),
        ("STOCKADE_ALLOW_OPEN_SIGNUP", "true".to_owned()),
        ("STOCKADE_TRUSTED_PROXIES", "none".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
