//! Issue #17 item 9, as the attacker: look-alike spellings of a registered
//! address (full-width, mathematical letters, case folding, IDN domains)
//! are the same account on every path, and the ones that cannot be the same
//! (mixed scripts, invisible characters, dotless i) are refused. Lockout
//! counts across spellings. Stored keys of older rows are re-keyed, or the
//! re-keying refuses when two accounts collide. On SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, server, signup};
use crate::mailbox::{login_fresh, outbox, post_fresh};
use crate::testkit::{Backend, TestDb, TestServer};

/// Spellings that are each the account in the comment.
const SAME_AS_ALICE: &[&str] = &[
    "ALICE@EXAMPLE.TEST",
    "ａｌｉｃｅ@example.test",              // full-width
    "ＡＬＩＣＥ＠ＥＸＡＭＰＬＥ．ＴＥＳＴ", // full-width, all of it
    "𝐚𝐥𝐢𝐜𝐞@example.test",                   // mathematical bold
    "𝒶𝓁𝒾𝒸ℯ@example.test",                   // mathematical script
    "alice@example。test",                  // ideographic full stop
];

/// Spellings refused outright (they would be separate accounts otherwise).
const REFUSED: &[&str] = &[
    "\u{430}lice@example.test", // Cyrillic а in a Latin name
    "\u{430}\u{4cf}\u{456}\u{441}\u{435}@example.test", // all Cyrillic, looks Latin
    "al\u{131}ce@example.test", // dotless ı
    "AL\u{130}CE@example.test", // Turkish İ (folds to i + dot above)
    "al\u{200d}ice@example.test", // zero-width joiner
    "al\u{200b}ice@example.test", // zero-width space
    "alice@example.test.",      // trailing dot
    "alice@ex\u{430}mple.test", // Cyrillic а in the domain
];

fn body(slug: &str, email: &str) -> Value {
    json!({"tenant_name": "Look Alike", "tenant_slug": slug, "email": email,
        "password": "Look-Alike-Passw0rd-5", "name": "Mallory"})
}

async fn signup_status(s: &TestServer, slug: &str, email: &str) -> (StatusCode, Value) {
    let res = post_fresh(s, "/v1/auth/signup", &body(slug, email)).await;
    let status = res.status();
    (status, res.json().await.unwrap())
}

async fn user_count(s: &TestServer) -> i64 {
    let (n,): (i64,) =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_optional("SELECT COUNT(*) FROM users", vec![])
            .await
            .unwrap()
            .unwrap();
    n
}

async fn look_alike_spellings_are_the_registered_account(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "alice@example.test").await;
    signup(&s, "strasse", "straße@example.test").await;
    signup(&s, "munich", "bob@Münich.example").await;
    for (i, email) in SAME_AS_ALICE
        .iter()
        .copied()
        .chain(["STRASSE@example.test", "bob@xn--mnich-kva.example"])
        .enumerate()
    {
        // Sign-up: answered as for a new address, but the mail goes to the
        // registered account's address, and no second account appears.
        let before = outbox(&s).await.len();
        let (status, _) = signup_status(&s, &format!("probe-{i}"), email).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{email}");
        let mail = outbox(&s).await.split_off(before);
        assert_eq!(mail.len(), 1, "{email}");
        assert_eq!(mail[0].kind, "account_exists", "{email} is a new address");
    }
    assert_eq!(user_count(&s).await, 3);
    // Sign-in: each spelling is Alice's account.
    for email in SAME_AS_ALICE {
        let res = login_fresh(&s, email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK, "{email}");
    }
    assert_eq!(
        login_fresh(&s, "strasse@EXAMPLE.test", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        login_fresh(&s, "BOB@xn--mnich-kva.example", PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    // Refused spellings: 400 at sign-up, unknown at sign-in.
    for (i, email) in REFUSED.iter().enumerate() {
        let (status, problem) = signup_status(&s, &format!("refused-{i}"), email).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{email:?}");
        assert_eq!(problem["code"], "identity.invalid_email", "{email:?}");
        let res = login_fresh(&s, email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{email:?}");
    }
    assert_eq!(user_count(&s).await, 3);

    // Invitations: a look-alike of a member is that member.
    let owner = crate::auth::login_ok(&s, "alice@example.test").await;
    let res = s
        .client
        .post(s.url("/v1/invitations"))
        .bearer_auth(&owner.access)
        .json(&json!({"email": "𝐀𝐋𝐈𝐂𝐄@example.test", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "tenancy.already_member"
    );
    for bad in REFUSED {
        let res = s
            .client
            .post(s.url("/v1/invitations"))
            .bearer_auth(&owner.access)
            .json(&json!({"email": bad, "role": "viewer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // A look-alike invitation accepted as a new account reaches the
    // registered account's owner, not a new account.
    let token =
        crate::members::invite_ok(&s, &owner.access, "BOB@xn--mnich-kva.example", "viewer").await;
    let before = outbox(&s).await.len();
    let res = post_fresh(
        &s,
        "/v1/invitations/accept",
        &json!({"token": token, "name": "M", "password": "Look-Alike-Passw0rd-5"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = outbox(&s).await.split_off(before);
    assert_eq!(
        (mail[0].kind.as_str(), mail[0].to.as_str()),
        ("account_exists", "bob@münich.example")
    );
    // And Bob, signed in, accepts it with his own account.
    let bob = crate::auth::login_ok(&s, "bob@münich.example").await;
    let res = crate::members::accept_bearer(&s, &bob.access, &token).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Users import: a look-alike of an account is an account that exists.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let hash = bcrypt::hash("Imported-Passw0rd-1", 4).unwrap();
    for email in ["ａｌｉｃｅ@example.test", "\u{430}lice@example.test"] {
        let csv = format!("email,name,password_hash\n{email},Imp,{hash}\n");
        let rows = stockade::identity::import::parse_import(csv.as_bytes(), 10);
        let refused = match rows {
            Err(_) => true,
            Ok(rows) => stockade::identity::import_store::import_users(
                &s.db,
                s.clock.as_ref(),
                &tenant,
                rows,
                "f.csv",
                |_| {},
            )
            .await
            .is_err(),
        };
        assert!(refused, "{email:?} was imported");
    }
    assert_eq!(user_count(&s).await, 3);
}

async fn lockout_counts_across_look_alike_spellings(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "alice@example.test").await;
    // Ten failures, each from its own address and in another spelling: one
    // account, one count.
    for i in 0..10 {
        let email = SAME_AS_ALICE[i % SAME_AS_ALICE.len()];
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": email, "password": "Wrong-Passw0rd-99"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{email}");
    }
    let res = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.77")
        .json(&json!({"email": "alice@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "auth.account_locked"
    );
}

/// Inserts a user as an older version stored it: key trimmed and
/// lower-cased only.
async fn legacy_user(db: &stockade::db::Db, email: &str) -> stockade::ids::UserId {
    let id = stockade::ids::UserId::new();
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut tx = db.global_tx().await.unwrap();
    tx.execute(
        "INSERT INTO users (id, email, email_key, name, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'Old', 'active', $4, $4)",
        vec![
            id.into(),
            email.into(),
            email.trim().to_lowercase().into(),
            now.into(),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn key_of(db: &stockade::db::Db, id: stockade::ids::UserId) -> String {
    let (key,): (String,) = db
        .global_read()
        .await
        .unwrap()
        .fetch_optional("SELECT email_key FROM users WHERE id = $1", vec![id.into()])
        .await
        .unwrap()
        .unwrap();
    key
}

async fn stored_keys_are_rekeyed_or_the_collision_refused(t: &TestDb) {
    use stockade::identity::rekey::{RekeyError, rekey_emails};
    let wide = legacy_user(&t.db, "ＡＬＩＣＥ@example.test").await;
    let idn = legacy_user(&t.db, "bob@Münich.example").await;
    let mixed = legacy_user(&t.db, "\u{430}lice@example.test").await;
    let plain = legacy_user(&t.db, "Carol@Example.test").await;
    // A look-alike pair: refused, nothing changed.
    let twin = legacy_user(&t.db, "𝐜𝐚𝐫𝐨𝐥@example.test").await;
    match rekey_emails(&t.db).await {
        Err(RekeyError::Collision { first, second, key }) => {
            assert_eq!(key, "carol@example.test");
            let mut pair = [first, second];
            pair.sort();
            let mut expected = [plain, twin];
            expected.sort();
            assert_eq!(pair, expected);
        }
        other => panic!("expected a collision, got {other:?}"),
    }
    assert_eq!(key_of(&t.db, wide).await, "ａｌｉｃｅ@example.test");
    // The operator deletes the look-alike; the step then re-keys.
    let mut tx = t.db.global_tx().await.unwrap();
    tx.execute("DELETE FROM users WHERE id = $1", vec![twin.into()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = rekey_emails(&t.db).await.unwrap();
    assert_eq!((report.rekeyed, report.kept.as_slice()), (2, &[mixed][..]));
    assert_eq!(key_of(&t.db, wide).await, "alice@example.test");
    assert_eq!(key_of(&t.db, idn).await, "bob@xn--mnich-kva.example");
    assert_eq!(key_of(&t.db, plain).await, "carol@example.test");
    // Refused by the new rules: keeps its old key, still found by it.
    assert_eq!(key_of(&t.db, mixed).await, "\u{430}lice@example.test");
    assert_eq!(
        stockade::identity::email::sign_in_key("\u{430}lice@Example.test"),
        "\u{430}lice@example.test"
    );
    // Recorded: a second run does nothing, even with a new legacy row.
    let late = legacy_user(&t.db, "ＤＡＶＥ@example.test").await;
    assert_eq!(rekey_emails(&t.db).await.unwrap().rekeyed, 0);
    assert_eq!(key_of(&t.db, late).await, "ｄａｖｅ@example.test");
}

/// The operator's way out of a collision, with the real binary (SQLite):
/// `migrate` refuses with one line naming both accounts, `users delete`
/// still runs and removes the one named exactly as stored, `migrate` then
/// re-keys the other.
#[tokio::test]
async fn migrate_names_look_alike_accounts_and_users_delete_resolves_them() {
    use crate::cli::{run, stockade};
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path()).arg("migrate"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two accounts an older version stored apart, and its key version.
    let db = stockade::db::Db::open_sqlite_file(&dir.path().join("stockade-data/stockade.db"))
        .await
        .unwrap();
    let plain = legacy_user(&db, "Carol@example.test").await;
    let twin = legacy_user(&db, "𝐜𝐚𝐫𝐨𝐥@example.test").await;
    let mut tx = db.global_tx().await.unwrap();
    tx.execute("UPDATE email_key_version SET version = 1", vec![])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = run(stockade(dir.path()).arg("migrate"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: accounts")
            && err.contains(&plain.to_string())
            && err.contains(&twin.to_string()),
        "{err}"
    );
    assert_eq!(key_of(&db, twin).await, "𝐜𝐚𝐫𝐨𝐥@example.test");
    // Named as stored, the look-alike goes (not Carol, whose canonical key
    // the spelling shares).
    let out = run(stockade(dir.path()).args(["users", "delete", "--email", "𝐜𝐚𝐫𝐨𝐥@example.test"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&twin.to_string()));
    let out = run(stockade(dir.path()).arg("migrate"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(key_of(&db, plain).await, "carol@example.test");
    db.close().await;
}

crate::both_servers!(
    look_alike_spellings_are_the_registered_account,
    lockout_counts_across_look_alike_spellings,
);

mod rekey {
    crate::both_backends!(stored_keys_are_rekeyed_or_the_collision_refused);
    use super::stored_keys_are_rekeyed_or_the_collision_refused;
}
