//! The `stockade` binary as an operator runs it.

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
fn start(dir: &Path, env: &[(&str, &str)]) -> Started {
    let mut cmd = stockade(dir);
    cmd.arg("serve")
        .env("STOCKADE_LISTEN", "127.0.0.1:0")
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

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `signing key …` lines of `keys status`.
fn signing_key_lines(out: &Output) -> Vec<String> {
    stdout_of(out)
        .lines()
        .filter(|l| l.starts_with("signing key "))
        .map(str::to_owned)
        .collect()
}

/// The kid of a `signing key KID …` line.
fn kid_of(line: &str) -> String {
    line.split_whitespace().nth(2).unwrap().to_owned()
}

#[tokio::test]
async fn keys_status_and_signing_rotation() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(stockade(dir.path()).arg("migrate")).status.success());
    let out = run(stockade(dir.path()).args(["keys", "status"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(signing_key_lines(&out).is_empty());
    assert!(stdout_of(&out).contains("no signing key stored yet"));
    assert!(stdout_of(&out).contains("master key: development key, generated at the first start"));
    // `keys status` only reads: it generated no key.
    assert!(!dir.path().join("stockade-data/keys").exists());

    // A development start stores the configured key as the current one.
    let started = start(dir.path(), &[]);
    let res = reqwest::get(format!("{}/healthz", started.url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(stop(started).success());
    let out = run(stockade(dir.path()).args(["keys", "status"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    let lines = signing_key_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("alg=EdDSA"), "{lines:?}");
    assert!(lines[0].contains("retired=-"), "{lines:?}");
    assert!(lines[0].ends_with(" current"), "{lines:?}");
    let first = kid_of(&lines[0]);
    let all = stdout_of(&out);
    assert!(
        all.contains("master key: development key, generated"),
        "{all}"
    );
    assert!(all.contains("never use it in production"), "{all}");
    // Never a key itself.
    let master = std::fs::read_to_string(dir.path().join("stockade-data/keys/master.key")).unwrap();
    let encoded = master.lines().last().unwrap();
    assert!(!all.contains(encoded));

    let out = run(stockade(dir.path()).args(["keys", "rotate", "--signing"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    let said = stdout_of(&out);
    assert!(
        said.contains(&format!("previous key {first} verify for 15 more minutes")),
        "{said}"
    );
    let new = said
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("new signing key ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new, first);

    let out = run(stockade(dir.path()).args(["keys", "status"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    let lines = signing_key_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let current: Vec<&String> = lines.iter().filter(|l| l.ends_with(" current")).collect();
    assert_eq!(current.len(), 1, "{lines:?}");
    assert_eq!(kid_of(current[0]), new);
    let old = lines.iter().find(|l| kid_of(l) == first).unwrap();
    assert!(!old.contains("retired=-"), "{old}");
    assert!(old.contains("verifies until"), "{old}");

    // A restarted server signs with the new key and still publishes the old one.
    let started = start(dir.path(), &[]);
    let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", started.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stop(started).success());
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&new.as_str()) && kids.contains(&first.as_str()),
        "{kids:?}"
    );

    // Two things to rotate at once: one line, exit 2, nothing rotated.
    let out = run(stockade(dir.path()).args(["keys", "rotate", "--signing", "--tenant-data"]));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--signing"), "{lines:?}");
    assert_eq!(
        signing_key_lines(&run(stockade(dir.path()).args(["keys", "status"]))).len(),
        2
    );
}

/// An import file: `(email, name, password, role)` rows, hashed with bcrypt.
fn import_csv(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut csv = "email,name,password_hash,role\n".to_owned();
    for (email, name, password, role) in rows {
        let hash = bcrypt::hash(password, 4).unwrap();
        csv.push_str(&format!("{email},\"{name}\",{hash},{role}\n"));
    }
    csv
}

pub async fn sqlite_conn(dir: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let db = dir.join("stockade-data/stockade.db");
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

async fn sqlite_user_count(dir: &Path) -> i64 {
    let mut conn = sqlite_conn(dir).await;
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn sqlite_password_hash(dir: &Path, email_key: &str) -> String {
    let mut conn = sqlite_conn(dir).await;
    sqlx::query_scalar("SELECT password_hash FROM users WHERE email_key = ?")
        .bind(email_key)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

fn create_tenant(dir: &Path, slug: &str) {
    let out = run(stockade(dir).args(["tenant", "create", "--slug", slug, "--name", "Imported"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
}

fn import(dir: &Path, file: &str, tenant: &str) -> Output {
    run(stockade(dir).args(["users", "import", file, "--tenant", tenant]))
}

async fn login_status(url: &str, email: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn users_import_then_imported_user_signs_in_and_is_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    create_tenant(dir.path(), "acme");
    std::fs::create_dir(dir.path().join("exports")).unwrap();
    std::fs::write(
        dir.path().join("exports/users.csv"),
        import_csv(&[
            (
                "Ann@Import.test",
                "Ann Admin",
                "Ann-Old-Passw0rd-1",
                "admin",
            ),
            ("bob@import.test", "Bob, Jr.", "Bob-Old-Passw0rd-2", ""),
            ("cat@import.test", "Cat", "Cat-Old-Passw0rd-3", "editor"),
        ]),
    )
    .unwrap();
    let out = import(dir.path(), "exports/users.csv", "acme");
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(stderr_lines(&out).is_empty(), "{:?}", stderr_lines(&out));
    assert_eq!(
        stdout_of(&out).lines().last(),
        Some("imported 3 users into acme")
    );
    assert!(
        sqlite_password_hash(dir.path(), "ann@import.test")
            .await
            .starts_with("$2b$04$")
    );

    // One audit event, in the tenant's intact chain, naming the file only.
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(stdout_of(&out).contains("events=2 head_seq=2"));
    let mut conn = sqlite_conn(dir.path()).await;
    let (actor, details): (String, String) = sqlx::query_as(
        "SELECT actor_type, details FROM audit_events WHERE action = 'identity.users.imported'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(actor, "system");
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"count": 3, "file": "users.csv"})
    );
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT u.email_key, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         ORDER BY u.email_key",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        roles,
        [
            ("ann@import.test".to_owned(), "admin".to_owned()),
            ("bob@import.test".to_owned(), "viewer".to_owned()),
            ("cat@import.test".to_owned(), "editor".to_owned()),
        ]
    );
    drop(conn);

    // The old password works, and the hash is upgraded to argon2id.
    let started = start(dir.path(), &[]);
    assert_eq!(
        login_status(&started.url, "ann@import.test", "Bob-Old-Passw0rd-2").await,
        401
    );
    assert_eq!(
        login_status(&started.url, "ann@import.test", "Ann-Old-Passw0rd-1").await,
        200
    );
    let upgraded = sqlite_password_hash(dir.path(), "ann@import.test").await;
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    // And keeps working with the new hash.
    assert_eq!(
        login_status(&started.url, "ann@import.test", "Ann-Old-Passw0rd-1").await,
        200
    );
    assert!(stop(started).success());
    // Users who have not signed in yet keep their bcrypt hash.
    assert!(
        sqlite_password_hash(dir.path(), "bob@import.test")
            .await
            .starts_with("$2b$")
    );
}

#[tokio::test]
async fn users_import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    create_tenant(dir.path(), "acme");
    let good = ("good@import.test", "Good", "Good-Old-Passw0rd-1", "editor");
    // One bad row (line 2: three problems) and one good row: nothing is written.
    let file = dir.path().join("bad.csv");
    let mut csv = import_csv(&[good]);
    csv.insert_str(
        csv.find('\n').unwrap() + 1,
        "not-an-email,,$2b$04$tooshort,Admin\n",
    );
    std::fs::write(&file, csv).unwrap();
    let out = import(dir.path(), "bad.csv", "acme");
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, field) in lines.iter().zip(["email", "name", "password_hash", "role"]) {
        assert!(
            line.starts_with(&format!("error: line 2: {field}:")),
            "{lines:?}"
        );
    }
    assert!(!lines.join("\n").contains("tooshort"));

    // Roles outside the built-in ones are row errors too; the line numbers
    // are the file's, blank lines included.
    let csv = import_csv(&[
        good,
        ("root@import.test", "Root", "Root-Old-Passw0rd-2", "root"),
    ]);
    std::fs::write(dir.path().join("roles.csv"), csv.replacen('\n', "\n\n", 2)).unwrap();
    std::fs::write(dir.path().join("crlf.csv"), csv.replace('\n', "\r\n")).unwrap();
    for (file, line) in [("roles.csv", 5), ("crlf.csv", 3)] {
        let out = import(dir.path(), file, "acme");
        assert_eq!(out.status.code(), Some(1));
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "error: line {line}: role: must be one of the built-in roles"
            )),
            "{file}: {lines:?}"
        );
    }

    // No such tenant, whole-file problems: one line each.
    for (file, tenant, needle) in [
        ("roles.csv", "nope", "no tenant with slug `nope`"),
        ("missing.csv", "acme", "cannot open missing.csv"),
    ] {
        let out = import(dir.path(), file, tenant);
        assert_eq!(out.status.code(), Some(1));
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(needle), "{lines:?}");
    }
    std::fs::write(dir.path().join("header.csv"), "email,name,password\n").unwrap();
    let out = import(dir.path(), "header.csv", "acme");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr_lines(&out).len(), 1, "{:?}", stderr_lines(&out));
    assert_eq!(sqlite_user_count(dir.path()).await, 0);

    // The fixed file imports: the good row was never half-written.
    std::fs::write(dir.path().join("fixed.csv"), import_csv(&[good])).unwrap();
    let out = import(dir.path(), "fixed.csv", "acme");
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert_eq!(stdout_of(&out).trim(), "imported 1 users into acme");
    assert_eq!(sqlite_user_count(dir.path()).await, 1);
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert!(stdout_of(&out).contains("events=2 head_seq=2"));
}

#[tokio::test]
async fn users_import_refuses_an_email_that_already_has_an_account() {
    let dir = tempfile::tempdir().unwrap();
    create_tenant(dir.path(), "acme");
    create_tenant(dir.path(), "beta");
    let ann = ("ann@import.test", "Ann", "Ann-Old-Passw0rd-1", "owner");
    std::fs::write(dir.path().join("a.csv"), import_csv(&[ann])).unwrap();
    assert!(import(dir.path(), "a.csv", "acme").status.success());
    let before = sqlite_password_hash(dir.path(), "ann@import.test").await;

    // The same address (in another case) for another tenant: the account is
    // not linked to it, and the other rows are not imported either.
    std::fs::write(
        dir.path().join("b.csv"),
        import_csv(&[
            ("zed@import.test", "Zed", "Zed-Old-Passw0rd-2", ""),
            ("ANN@IMPORT.TEST", "Ann Again", "Other-Passw0rd-3", "admin"),
        ]),
    )
    .unwrap();
    let out = import(dir.path(), "b.csv", "beta");
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error: line 3: email: an account with this address already exists"),
        "{lines:?}"
    );
    assert_eq!(sqlite_user_count(dir.path()).await, 1);
    assert_eq!(
        sqlite_password_hash(dir.path(), "ann@import.test").await,
        before
    );
    let mut conn = sqlite_conn(dir.path()).await;
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, 1);
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    let said = stdout_of(&out);
    assert_eq!(said.matches("events=1 ").count(), 1, "{said}"); // beta: created only
    assert_eq!(said.matches("events=2 ").count(), 1, "{said}"); // acme: created, imported
}

#[tokio::test]
async fn users_import_on_postgres() {
    let Some((name, url)) = crate::testkit::create_pg_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let migrated = run(stockade(dir.path())
        .arg("migrate")
        .env("STOCKADE_MIGRATE_DATABASE_URL", &url));
    assert!(migrated.status.success(), "{:?}", stderr_lines(&migrated));
    let login = crate::testkit::pg_login_url(&name);
    let pg = |args: &[&str]| {
        run(stockade(dir.path())
            .args(args)
            .env("STOCKADE_DATABASE_URL", &login))
    };
    let created = pg(&["tenant", "create", "--slug", "pg-acme", "--name", "PG Acme"]);
    std::fs::write(
        dir.path().join("users.csv"),
        import_csv(&[
            ("ann@import.test", "Ann", "Ann-Old-Passw0rd-1", "admin"),
            ("bob@import.test", "Bob", "Bob-Old-Passw0rd-2", ""),
        ]),
    )
    .unwrap();
    let imported = pg(&["users", "import", "users.csv", "--tenant", "pg-acme"]);
    let again = pg(&["users", "import", "users.csv", "--tenant", "pg-acme"]);
    let verified = pg(&["audit", "verify"]);
    let counts = async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        (users, members)
    }
    .await;
    crate::testkit::drop_pg_database(&name);
    assert!(created.status.success(), "{:?}", stderr_lines(&created));
    assert!(imported.status.success(), "{:?}", stderr_lines(&imported));
    assert_eq!(
        stdout_of(&imported).lines().last(),
        Some("imported 2 users into pg-acme")
    );
    // A second run finds both addresses taken and writes nothing.
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr_lines(&again).len(), 2, "{:?}", stderr_lines(&again));
    assert!(verified.status.success(), "{:?}", stderr_lines(&verified));
    assert!(stdout_of(&verified).contains("events=2 head_seq=2"));
    assert_eq!(counts, (2, 2));
    assert!(!dir.path().join("stockade-data/stockade.db").exists());
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

#[tokio::test]
async fn plaintext_password_never_stored_or_logged() {
    const PASSWORD: &str = "Zq-Unique-Passw0rd-8841";
    const WRONG: &str = "Zq-Wrong-Passw0rd-8841";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (started, stdout) = start_capturing(dir.path(), &[("RUST_LOG", "debug")], &log);
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", started.url))
            .json(&body)
            .send()
    };
    let mut bodies = Vec::new();
    let res = post(
        "/v1/auth/signup",
        serde_json::json!({"tenant_name": "Secret Co", "tenant_slug": "secret-co",
            "email": "owner@secret.test", "password": PASSWORD, "name": "Pat Owner"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    bodies.push(res.bytes().await.unwrap());
    let data = dir.path().join("stockade-data");
    let token = crate::mailbox::token_in_data_dir(&data, &[], "owner@secret.test").await;
    for (path, body, status) in [
        (
            "/v1/auth/verify-email",
            serde_json::json!({ "token": token, "password": PASSWORD }),
            201,
        ),
        (
            "/v1/auth/login",
            serde_json::json!({"email": "owner@secret.test", "password": PASSWORD}),
            200,
        ),
        (
            "/v1/auth/login",
            serde_json::json!({"email": "owner@secret.test", "password": WRONG}),
            401,
        ),
        (
            "/v1/auth/password-reset/request",
            serde_json::json!({"email": "owner@secret.test"}),
            202,
        ),
    ] {
        let res = post(path, body).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        bodies.push(res.bytes().await.unwrap());
    }
    // While running (the WAL still holds the recent writes) and after a stop.
    let mut scanned = Vec::new();
    for file in files_under(&data) {
        scanned.push((file.clone(), std::fs::read(&file).unwrap()));
    }
    assert!(stop(started).success());
    let stdout = stdout.join().unwrap();
    for file in files_under(&data) {
        scanned.push((file.clone(), std::fs::read(&file).unwrap()));
    }
    assert!(
        scanned.iter().any(|(f, _)| f.ends_with("stockade.db-wal")),
        "{:?}",
        scanned.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    let logged = std::fs::read(&log).unwrap();
    // The capture is real: debug logging of these very requests.
    let text = String::from_utf8_lossy(&logged);
    assert!(
        text.contains("DEBUG") && text.contains("/v1/auth/login"),
        "{text}"
    );
    for secret in [PASSWORD, WRONG] {
        assert!(
            !contains(&logged, secret),
            "{secret} in the server's stderr"
        );
        assert!(!stdout.contains(secret), "{secret} in the server's stdout");
        for body in &bodies {
            assert!(!contains(body, secret), "{secret} in a response");
        }
        for (file, bytes) in &scanned {
            assert!(!contains(bytes, secret), "{secret} in {}", file.display());
        }
    }
}

fn env_value<'a>(env: &[(&'a str, &'a str)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap()
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

#[tokio::test]
async fn production_logs_queued_email_without_its_secret_link() {
    let dir = tempfile::tempdir().unwrap();
    let env = production_env(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = dir.path().join("server.log");
    let (started, reader) = start_capturing(dir.path(), &env, &log);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/v1/auth/signup", started.url))
        .json(
            &serde_json::json!({"tenant_name": "Acme", "tenant_slug": "acme",
            "email": "owner@acme.test", "password": "Correct-Horse-Battery-42", "name": "Pat"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let master = [(
        "STOCKADE_MASTER_KEY_FILE",
        env_value(&env, "STOCKADE_MASTER_KEY_FILE"),
    )];
    let token = crate::mailbox::token_in_data_dir(
        &dir.path().join("stockade-data"),
        &master,
        "owner@acme.test",
    )
    .await;
    let res = client
        .post(format!("{}/v1/auth/verify-email", started.url))
        .json(&serde_json::json!({ "token": token, "password": "Correct-Horse-Battery-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = client
        .post(format!("{}/v1/auth/password-reset/request", started.url))
        .json(&serde_json::json!({"email": "owner@acme.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(stop(started).success());
    let stdout = reader.join().unwrap();
    // The token, as the mail sender will see it: unsealed from the outbox.
    let mut conn = sqlite_conn(dir.path()).await;
    let (id, sealed): (uuid::Uuid, Vec<u8>) =
        sqlx::query_as("SELECT id, sealed_body FROM email_outbox WHERE kind = 'password_reset'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let body = stockade::crypto::seal::open(&[42u8; 32], &stockade::email::outbox_aad(id), &sealed)
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = body["body"].as_str().unwrap();
    assert!(text.contains("https://app.example.test/reset-password#token="));
    let token = text
        .split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("email queued"),
        "the debug line was written"
    );
    assert!(!logged.contains(token), "the reset token reached the log");
    assert!(!stdout.contains(token));
    // Nowhere on disk in clear either.
    for file in files_under(&dir.path().join("stockade-data")) {
        assert!(
            !contains(&std::fs::read(&file).unwrap(), token),
            "{}",
            file.display()
        );
    }
}

/// The dev master key file, read the way the server reads it.
fn dev_master(dir: &Path) -> stockade::crypto::keys::MasterKey {
    let path = dir.join("stockade-data/keys/master.key");
    let text = std::fs::read_to_string(&path).unwrap();
    stockade::crypto::keys::MasterKey::parse(&text, Some(path)).unwrap()
}

/// Stores `n` encrypted records for tenant `slug` in the embedded database.
async fn store_records(dir: &Path, slug: &str, n: usize) {
    use stockade::clock::Clock;
    let db = stockade::db::Db::open_sqlite_file(&dir.join("stockade-data/stockade.db"))
        .await
        .unwrap();
    let tenant = stockade::tenancy::find_by_slug(&db, slug)
        .await
        .unwrap()
        .unwrap()
        .id;
    let clock = stockade::clock::SystemClock;
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let keys = stockade::crypto::envelope::load(&mut tx, &dev_master(dir), &clock)
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO collections (tenant_id, name, created_at, updated_at) \
         VALUES ($1, 'notes', $2, $2) ON CONFLICT DO NOTHING",
        vec![clock.now().into()],
    )
    .await
    .unwrap();
    for i in 0..n {
        let id = uuid::Uuid::now_v7();
        let doc = stockade::records::cipher::StoredDocument {
            key: None,
            data: serde_json::json!({ "n": i }),
        };
        let (body, v) = stockade::records::cipher::seal_document(&keys, "notes", id, &doc).unwrap();
        tx.execute(
            "INSERT INTO records (tenant_id, id, collection, body, key_version, version, \
             created_at, updated_at) VALUES ($1, $2, 'notes', $3, $4, 1, $5, $5)",
            vec![
                id.into(),
                body.into(),
                i64::from(v).into(),
                clock.now().into(),
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    db.close().await;
}

/// `keys rotate`, `keys rotate --tenant-data`, `keys retire` and `keys status`
/// as an operator runs them: refusals are one `error:` line with a non-zero
/// exit and change nothing; the key file stays mode 0600.
#[tokio::test]
async fn keys_rotate_retire_and_status_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |args: &[&str]| run(stockade(dir.path()).arg("keys").args(args));
    let ok = |out: &Output| {
        assert!(out.status.success(), "{:?}", stderr_lines(out));
        stdout_of(out)
    };
    let refused = |out: &Output, want: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", stdout_of(out));
        let lines = stderr_lines(out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(want),
            "{lines:?}"
        );
    };
    create_tenant(dir.path(), "acme");
    create_tenant(dir.path(), "beta");
    store_records(dir.path(), "acme", 3).await;
    let key_file = dir.path().join("stockade-data/keys/master.key");

    let status = ok(&keys(&["status"]));
    assert!(
        status.contains("master key v1 (current): wraps 4 tenant keys"),
        "{status}"
    );
    assert!(
        status.contains("tenant acme data key v1 (current): 3 records"),
        "{status}"
    );
    assert!(
        status.contains("tenant beta data key v1 (current): 0 records"),
        "{status}"
    );

    // Master key: v2, everything re-wrapped; the development marker is kept.
    let said = ok(&keys(&["rotate"]));
    assert!(
        said.starts_with("master key v2 is new and current: re-wrapped 4 tenant keys"),
        "{said}"
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.starts_with("# stockade development key"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with('v')).count(), 2);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = ok(&keys(&["status"]));
    assert!(
        status.contains("master key v1: wraps 0 tenant keys, 0 signing keys"),
        "{status}"
    );
    assert!(
        status.contains("master key v2 (current): wraps 4 tenant keys"),
        "{status}"
    );
    refused(&keys(&["retire", "--master", "2"]), "current");
    ok(&keys(&["retire", "--master", "1"]));
    assert_eq!(
        std::fs::read_to_string(&key_file)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('v'))
            .count(),
        1
    );

    // Data keys: v1 protects acme's records, so it cannot be retired yet.
    refused(&keys(&["retire", "1"]), "current key");
    let said = ok(&keys(&["rotate", "--tenant-data", "--tenant", "acme"]));
    assert!(
        said.contains("tenant acme: data key v2 (new) is current; re-encrypted 3 records"),
        "{said}"
    );
    assert!(!said.contains("beta"), "{said}");
    refused(
        &keys(&["retire", "1"]),
        "tenant beta uses data key v1 as its current key",
    );
    let said = ok(&keys(&["retire", "1", "--tenant", "acme"]));
    assert!(said.contains("tenant acme: data key v1 retired"), "{said}");
    let status = ok(&keys(&["status"]));
    assert!(
        status.contains("tenant acme data key v1 (retired): 0 records"),
        "{status}"
    );
    assert!(
        status.contains("tenant acme data key v2 (current): 3 records"),
        "{status}"
    );
    refused(
        &keys(&["retire", "7", "--tenant", "acme"]),
        "has no data key v7",
    );
    refused(
        &keys(&["retire", "1", "--tenant", "nope"]),
        "no tenant with slug",
    );
    // A bad command line: exit 2, one line.
    let out = keys(&["retire"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr_lines(&out).len(), 1);
}
