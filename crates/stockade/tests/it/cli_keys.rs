//! `stockade keys` as an operator runs it: `keys status`, signing-key
//! rotation picked up by a running server, `keys rotate` (also
//! `--tenant-data`) and `keys retire`, with one-line refusals that change
//! nothing and a key file that stays mode 0600. Its fixtures for running the
//! binary come from `cli.rs`; it defines none other files use.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::cli::{create_tenant, run, start, stderr_lines, stdout_of, stockade, stop};

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
