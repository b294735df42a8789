//! `stockade users import`: imported users sign in and are rehashed, an
//! import is all or nothing, an address that already has an account is
//! refused, and the same on PostgreSQL. Its fixtures for running the binary
//! come from `cli.rs`; it defines none other files use.

use std::path::Path;
use std::process::Output;

use crate::cli::{create_tenant, run, sqlite_conn, start, stderr_lines, stdout_of, stockade, stop};

/// An import file: `(email, name, password, role)` rows, hashed with bcrypt.
fn import_csv(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut csv = "email,name,password_hash,role\n".to_owned();
    for (email, name, password, role) in rows {
        let hash = bcrypt::hash(password, 4).unwrap();
        csv.push_str(&format!("{email},\"{name}\",{hash},{role}\n"));
    }
    csv
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
