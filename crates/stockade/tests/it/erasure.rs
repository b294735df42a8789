//! User deletion and audit anonymisation (SPEC §2.7, §2.15; issue #6 item
//! 7), on SQLite and PostgreSQL: a deleted user's personal data in past
//! events (address, user agent, email) becomes unreadable — not in the raw
//! database, not through the API — while every chain still verifies; the API
//! names them `deleted-user-…`; other users' events are untouched; bad
//! requests are refused with stable codes and change nothing.

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, server, signup};
use crate::cli::{run, stockade};
use crate::roles::{call, member_with_id};
use crate::testkit::{Backend, TestServer};

const OWNER: &str = "owner@acme.test";
const ALICE: &str = "Alice.Erased@Example.test";
const CAROL: &str = "carol.cli@example.test";
const ALICE_IP: &str = "203.0.113.77";
const CAROL_IP: &str = "203.0.113.88";
const AGENT: &str = "AliceAgent/7.1 (erasure-test)";

/// A request from `ip` (through the trusted proxy) with the test agent.
fn from(s: &TestServer, method: Method, path: &str, ip: &str) -> reqwest::RequestBuilder {
    s.client
        .request(method, s.url(path))
        .header("x-forwarded-for", ip)
        .header("user-agent", AGENT)
}

async fn sign_in(s: &TestServer, email: &str, password: &str, tenant: &str, ip: &str) -> Value {
    let res = from(s, Method::POST, "/v1/auth/login", ip)
        .json(&json!({"email": email, "password": password, "tenant": tenant}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(
        status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
        "{body}"
    );
    body
}

/// Every event of the tenant of `access`, oldest first, as the API shows them.
async fn events(s: &TestServer, access: &str, query: &str) -> Vec<Value> {
    let (st, page) = call(
        s,
        Method::GET,
        &format!("/v1/audit/events?order=asc&limit=500{query}"),
        access,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

async fn verified(s: &TestServer, access: &str) {
    let (st, report) = call(s, Method::GET, "/v1/audit/verify", access, None).await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["ok"], true, "{report}");
}

async fn reauth(s: &TestServer, access: &str, password: &str) {
    let (st, body) = call(
        s,
        Method::POST,
        "/v1/auth/reauth",
        access,
        Some(json!({"password": password})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
}

fn label(id: &str) -> String {
    format!("deleted-user-{}", &id.replace('-', "")[24..])
}

/// Everything the database holds, as text: every audit table's rows (and on
/// PostgreSQL the other tables that held the user's data), or on SQLite the
/// database file and its write-ahead log after a checkpoint.
async fn raw_database(s: &TestServer) -> String {
    if let Some(pool) = s.db.sqlite_pool() {
        let (busy,): (i64,) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(busy, 0, "checkpoint blocked");
        let mut all = String::new();
        for name in ["stockade.db", "stockade.db-wal"] {
            if let Ok(bytes) = std::fs::read(s.state.config.data_dir.join(name)) {
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(all.len() > 10_000, "no database file was read");
        return all;
    }
    // As the superuser, past row-level security: every column as text.
    let pool = &crate::testkit::owner_pool(&s.db).await;
    let mut dump = String::new();
    for table in [
        "audit_events",
        "audit_heads",
        "audit_subject_keys",
        "users",
        "sessions",
        "invitations",
        "login_throttle",
        "email_outbox",
        "api_keys",
        "memberships",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .unwrap();
        for (r,) in rows {
            dump.push_str(&r);
            dump.push('\n');
        }
    }
    let raw: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT COALESCE(pii, ''::bytea) FROM audit_events")
        .fetch_all(pool)
        .await
        .unwrap();
    for (bytes,) in raw {
        dump.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert!(dump.contains("owner@acme.test"), "the dump reads rows");
    dump
}

fn cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = stockade(dir.path());
    cmd.args(args)
        .env("STOCKADE_DATA_DIR", &s.state.config.data_dir);
    if let Some(url) = &s.state.config.database_url {
        cmd.env("STOCKADE_DATABASE_URL", url.value.expose_secret());
    }
    run(&mut cmd)
}

async fn deleted_users_events_become_unreadable_and_chains_still_verify(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    // acme: the owner; Alice joins by invitation. beta: Bob, who invites
    // Alice too (she accepts signed in). Carol is a viewer of acme.
    let owner = signup(&s, "acme", OWNER).await;
    let alice = crate::members::join(&s, &owner.access, ALICE, "admin").await;
    let bob = signup(&s, "beta", "bob@beta.test").await;
    let token = crate::members::invite_ok(&s, &bob.access, ALICE, "viewer").await;
    let res = crate::members::accept_bearer(&s, &alice.access, &token).await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
    let (_, carol_id) = member_with_id(&s, "acme", CAROL, "viewer").await;
    sign_in(&s, CAROL, PASSWORD, "acme", CAROL_IP).await;
    // Alice fails twice, then signs in, from her address with her agent.
    for _ in 0..2 {
        let body = sign_in(&s, ALICE, "Wrong-Password-9", "acme", ALICE_IP).await;
        assert_eq!(body["code"], "auth.invalid_credentials");
    }
    let body = sign_in(&s, ALICE, "Invited-Strong-Passw0rd", "acme", ALICE_IP).await;
    let alice_access = body["access_token"].as_str().unwrap().to_owned();
    // Before: the owner reads Alice's address, agent and email in clear.
    let before = events(&s, &owner.access, &format!("&actor={}", alice.id)).await;
    let failed: Vec<&Value> = before
        .iter()
        .filter(|e| e["action"] == "auth.login.failed")
        .collect();
    assert_eq!(failed.len(), 2, "{before:?}");
    for e in &failed {
        assert_eq!(e["ip"], ALICE_IP, "{e}");
        assert_eq!(e["user_agent"], AGENT, "{e}");
        assert_eq!(e["personal_details"]["email"], ALICE.to_lowercase(), "{e}");
        assert_eq!(e["subject_id"], alice.id.as_str());
        assert!(e["details"].is_object(), "{e}");
        assert!(!e["details"].to_string().contains('@'), "{e}");
        assert!(e.get("anonymised").is_none());
    }
    assert!(before.iter().any(|e| e["action"] == "auth.login.succeeded"
        && e["ip"] == ALICE_IP
        && e["user_agent"] == AGENT));
    let owner_before = events(&s, &owner.access, "&action=tenancy.tenant.created").await;

    // Refused, changing nothing: no recent step-up; an API key; the last
    // owner of a tenant; the CLI for an unknown address or the last owner.
    s.clock.advance(chrono::Duration::minutes(6));
    let (st, body) = call(&s, Method::DELETE, "/v1/me", &alice_access, None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.step_up_required")),
        "{body}"
    );
    // Creating an API key needs a step-up too.
    reauth(&s, &alice_access, "Invited-Strong-Passw0rd").await;
    let (st, key) = call(
        &s,
        Method::POST,
        "/v1/api-keys",
        &alice_access,
        Some(json!({"name": "alice laptop", "scopes": ["records:read"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let api_key = key["key"].as_str().unwrap().to_owned();
    let records = "/v1/collections/orders/records";
    let (st, body) = call(&s, Method::GET, records, &api_key, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = call(&s, Method::DELETE, "/v1/me", &api_key, None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.api_key_not_allowed")),
        "{body}"
    );
    reauth(&s, &owner.access, PASSWORD).await;
    let (st, body) = call(&s, Method::DELETE, "/v1/me", &owner.access, None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("identity.last_owner")),
        "{body}"
    );
    let out = cli(&s, &["users", "delete", "--email", OWNER]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("last active owner of tenant `acme`"), "{err}");
    let out = cli(&s, &["users", "delete", "--email", "nobody@example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with email"));
    let out = cli(&s, &["users", "delete", "--email", "not an address"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        crate::auth::me(&s, &owner.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        crate::auth::me(&s, &alice_access).await.status(),
        StatusCode::OK
    );
    assert!(
        !events(&s, &owner.access, "&action=identity.user.deleted")
            .await
            .iter()
            .any(|_| true)
    );

    // Alice deletes her account (step-up first); Carol is deleted by the CLI.
    reauth(&s, &alice_access, "Invited-Strong-Passw0rd").await;
    let (st, body) = call(&s, Method::DELETE, "/v1/me", &alice_access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let out = cli(&s, &["users", "delete", "--email", CAROL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&carol_id));

    // Gone at once: her token and her API key no longer work.
    assert_eq!(
        crate::auth::me(&s, &alice_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = call(&s, Method::GET, records, &api_key, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Every chain verifies, through the API and the CLI.
    verified(&s, &owner.access).await;
    verified(&s, &bob.access).await;
    let out = cli(&s, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The API shows deleted users by label, with no personal data; the
    // filter on the stored id still finds their events.
    for (id, reader) in [(&alice.id, &owner.access), (&alice.id, &bob.access)] {
        let after = events(&s, reader, &format!("&actor={id}")).await;
        assert!(!after.is_empty());
        for e in &after {
            assert_eq!(e["actor_id"], label(id), "{e}");
            assert_eq!(e["anonymised"], true, "{e}");
            assert!(e["ip"].is_null() && e["user_agent"].is_null(), "{e}");
            assert!(e.get("personal_details").is_none(), "{e}");
        }
    }
    let after = events(&s, &owner.access, &format!("&actor={}", alice.id)).await;
    // Plus her step-up for the key, her API key's creation, her step-up
    // for the deletion and her deletion.
    assert_eq!(after.len(), before.len() + 4, "{after:?}");
    for id in [&alice.id, &carol_id] {
        let deleted = events(
            &s,
            &owner.access,
            &format!("&action=identity.user.deleted&target={id}"),
        )
        .await;
        assert_eq!(deleted.len(), 1, "{deleted:?}");
        let e = &deleted[0];
        assert_eq!(e["target_id"], label(id));
        assert!(e["ip"].is_null() && e.get("personal_details").is_none());
    }
    // Nothing either tenant can read still shows her address or IP, not
    // even in events of other people (the invitations to her).
    for reader in [&owner.access, &bob.access] {
        let all = serde_json::to_string(&events(&s, reader, "").await).unwrap();
        assert!(all.contains("tenancy.invitation.created"));
        for needle in [ALICE.to_lowercase().as_str(), ALICE_IP, AGENT] {
            assert!(!all.contains(needle), "{needle} is still readable");
        }
    }
    let in_beta = events(&s, &bob.access, "&action=identity.user.deleted").await;
    assert_eq!(in_beta.len(), 1);
    assert_eq!(in_beta[0]["actor_id"], label(&alice.id));
    // Other users' events are untouched.
    let owner_after = events(&s, &owner.access, "&action=tenancy.tenant.created").await;
    assert_eq!(owner_after, owner_before);
    assert_eq!(owner_after.len(), 1);
    assert_eq!(owner_after[0]["ip"], "127.0.0.1", "{owner_after:?}");
    assert!(owner_after[0].get("anonymised").is_none());
    // The export keeps the ids as hashed, so its lines still recompute.
    let out = cli(&s, &["audit", "export", "--tenant", "acme"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut prev: Option<String> = None;
    let mut anonymised = 0;
    for line in text.lines() {
        let e: stockade::audit::StoredEvent = serde_json::from_str(line).unwrap();
        assert_eq!(e.compute_hash(), e.hash);
        if let Some(p) = &prev {
            assert_eq!(&e.prev_hash, p);
        }
        prev = Some(e.hash.clone());
        let v: Value = serde_json::from_str(line).unwrap();
        if v["anonymised"] == true {
            anonymised += 1;
            assert!(v["ip"].is_null() && v.get("personal_details").is_none());
        }
    }
    assert!(anonymised >= before.len(), "{anonymised}");

    // The raw database holds neither their addresses nor their agent.
    let raw = raw_database(&s).await;
    for needle in [
        ALICE,
        &ALICE.to_lowercase(),
        ALICE_IP,
        AGENT,
        CAROL,
        CAROL_IP,
    ] {
        assert!(!raw.contains(needle), "{needle} is still stored");
    }
    // Her password no longer signs in. (Last: an attempt with an unknown
    // address is audited in the platform log with the address it names.)
    let res = login(&s, ALICE, "Invited-Strong-Passw0rd", Some("acme")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

crate::both_servers!(deleted_users_events_become_unreadable_and_chains_still_verify);

#[tokio::test]
async fn openapi_describes_account_deletion_and_event_views() {
    let s = TestServer::start().await;
    let doc = s.openapi().await;
    let delete = &doc["paths"]["/v1/me"]["delete"];
    assert!(delete.is_object(), "DELETE /v1/me is documented");
    for status in ["204", "403", "409"] {
        assert!(delete["responses"][status].is_object(), "{status}");
    }
    assert!(doc["components"]["schemas"]["EventView"].is_object());
    s.stop().await;
}
