//! The audit log as a tenant admin reads it (SPEC §2.7): `GET /v1/audit/events`
//! with filters and cursors, `/v1/audit/verify`, the NDJSON export, and the
//! append-only guarantee in the database, on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::Value;
use stockade::audit::{self, Actor, GENESIS_HASH, NewEvent, Outcome, StoredEvent, Target};
use stockade::clock::Clock;
use stockade::ids::TenantId;

use crate::auth::{Login, server, signup};
use crate::testkit::{Backend, TestServer, raw_execute};

pub(crate) async fn tenant_id(s: &TestServer, slug: &str) -> TenantId {
    stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// The events of `tenant`'s chain with `action`, oldest first.
pub(crate) async fn events_of(
    db: &stockade::db::Db,
    tenant: TenantId,
    action: &str,
) -> Vec<StoredEvent> {
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let rows = tx
        .fetch_all(
            "SELECT * FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
            vec![action.into()],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

/// Appends `events` to `tenant`, one second apart on the test clock.
pub(crate) async fn append(s: &TestServer, tenant: TenantId, events: Vec<NewEvent>) {
    let mut tx = s.db.tenant_tx(tenant).await.unwrap();
    for e in events {
        s.clock.advance(chrono::Duration::seconds(1));
        audit::append(&mut tx, s.clock.as_ref(), e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A recognisable mix: 5 record creations (targets r0..r4, actor key `k1`)
/// and 2 failed logins.
pub(crate) fn sample() -> Vec<NewEvent> {
    let mut v: Vec<NewEvent> = (0..5)
        .map(|i| {
            NewEvent::new(
                Actor::ApiKey {
                    id: "k1".into(),
                    creator: stockade::ids::UserId::new(),
                },
                "records.record.created",
            )
            .target(Target::new("record", format!("r{i}")))
        })
        .collect();
    for _ in 0..2 {
        v.push(NewEvent::new(Actor::System, "auth.login.failed").outcome(Outcome::Failure));
    }
    v
}

pub(crate) async fn get(s: &TestServer, who: &Login, path: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .bearer_auth(&who.access)
        .send()
        .await
        .unwrap()
}

async fn events(s: &TestServer, who: &Login, query: &str) -> (Vec<Value>, Option<String>) {
    let res = get(s, who, &format!("/v1/audit/events?{query}")).await;
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    let body: Value = res.json().await.unwrap();
    let next = body["next_cursor"].as_str().map(str::to_owned);
    (body["events"].as_array().unwrap().clone(), next)
}

async fn read_filters_pages_and_isolation(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let _b = signup(&s, "beta", "owner@beta.test").await;
    let (ta, tb) = (tenant_id(&s, "acme").await, tenant_id(&s, "beta").await);
    let t0 = s.clock.now();
    append(&s, ta, sample()).await;
    append(&s, tb, sample()).await;
    append(&s, TenantId::PLATFORM, sample()).await;

    let (all, next) = events(&s, &a, "limit=500").await;
    assert!(next.is_none());
    assert!(all.iter().all(|e| e["tenant_id"] == ta.to_string()));
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(seqs, sorted, "newest first");
    assert_eq!(seqs.len() as i64, seqs[0], "every event of the tenant");

    // Filters never reach another tenant or the platform log.
    for (query, n) in [
        ("action=records.record.created", 5),
        ("action=records.*", 5),
        ("action=auth.login.failed&outcome=failure", 2),
        ("target=r1", 1),
        ("actor=k1", 5),
        ("actor=k1&target=r4", 1),
        ("action=nothing.here", 0),
    ] {
        let (got, _) = events(&s, &a, query).await;
        assert_eq!(got.len(), n, "{query}");
        assert!(
            got.iter().all(|e| e["tenant_id"] == ta.to_string()),
            "{query}"
        );
    }
    // Time window: the sample's 2nd and 3rd events (seconds 2 and 3 after t0).
    let fmt = |m: i64| (t0 + chrono::Duration::seconds(m)).to_rfc3339();
    let (got, _) = events(
        &s,
        &a,
        &format!("since={}&until={}", urlenc(&fmt(2)), urlenc(&fmt(3))),
    )
    .await;
    let targets: Vec<&str> = got
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["r2", "r1"]);

    // Cursor pages, both orders, cover everything exactly once.
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("limit=3&order={order}&cursor={c}"),
                None => format!("limit=3&order={order}"),
            };
            let (page, next) = events(&s, &a, &q).await;
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(|e| e["seq"].as_i64().unwrap()));
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut expect = sorted.clone();
        if order == "asc" {
            expect.reverse();
        }
        assert_eq!(seen, expect, "{order}");
    }
    s.stop().await;
}

fn urlenc(v: &str) -> String {
    v.replace('+', "%2B").replace(':', "%3A")
}

async fn bad_queries_are_400_problems(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    for (path, param) in [
        ("/v1/audit/events?limit=0", "limit"),
        ("/v1/audit/events?limit=501", "limit"),
        ("/v1/audit/events?order=sideways", "order"),
        ("/v1/audit/events?outcome=maybe", "outcome"),
        ("/v1/audit/events?since=yesterday", "since"),
        ("/v1/audit/events?action=DROP%20TABLE", "action"),
        ("/v1/audit/events?cursor=garbage", "cursor"),
        ("/v1/audit/events?tenant=beta", "tenant"),
        ("/v1/audit/events?limit=1&limit=2", "limit"),
        ("/v1/audit/verify?tenant=beta", "tenant"),
        ("/v1/audit/export?after=-1", "after"),
        ("/v1/audit/export?after=x", "after"),
        ("/v1/audit/export?since=1", "since"),
    ] {
        let before = crate::auth::audit_actions(&s, "acme").await.len();
        let res = get(&s, &a, path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "audit.invalid_query", "{path}");
        assert!(p["errors"].get(param).is_some(), "{path}: {p}");
        assert_eq!(crate::auth::audit_actions(&s, "acme").await.len(), before);
    }
    // A viewer has no `audit:read`: 403 on every route.
    let viewer = crate::members::join(&s, &a.access, "viewer@acme.test", "viewer").await;
    for path in ["/v1/audit/events", "/v1/audit/verify", "/v1/audit/export"] {
        let res = s
            .client
            .get(s.url(path))
            .bearer_auth(&viewer.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "rbac.forbidden", "{path}");
        assert_eq!(p["errors"]["permission"], "audit:read", "{path}");
    }
    // The routes are in the OpenAPI document.
    let doc = s.openapi().await;
    for path in ["/v1/audit/events", "/v1/audit/verify", "/v1/audit/export"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    assert!(doc["components"]["schemas"]["StoredEvent"].is_object());
    // No token: 401.
    let res = s
        .client
        .get(s.url("/v1/audit/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn verify_reports_only_the_callers_chain(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let (ta, tb) = (tenant_id(&s, "acme").await, tenant_id(&s, "beta").await);
    append(&s, ta, sample()).await;
    append(&s, tb, sample()).await;
    let r: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["tenant_id"], ta.to_string());
    let head = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert_eq!(r["events_checked"], head.events_checked);
    assert_eq!(r["head_seq"], head.head_seq);
    assert_eq!(r["head_hash"], head.head_hash);
    assert!(r.get("first_bad_seq").is_none());
    // Tamper with B's third event: B's verify fails there, A's still holds.
    raw_execute(
        &s.db,
        "UPDATE audit_events SET outcome = 'denied' WHERE tenant_id = $1 AND seq = 3",
        tb.as_uuid(),
    )
    .await;
    let r: Value = get(&s, &b, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(
        (r["ok"].clone(), r["first_bad_seq"].clone()),
        (false.into(), 3.into()),
        "{r}"
    );
    let r: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    s.stop().await;
}

/// Deleting the last three events (as the PostgreSQL owner; through the
/// purge gate on SQLite) leaves a chain that is sound on its own, but the
/// head record still names the old end: verify fails at the first missing seq.
async fn verify_catches_the_last_three_events_deleted(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    append(&s, ta, sample()).await;
    let head = audit::verify_tenant(&s.db, ta).await.unwrap().head_seq;
    let n = raw_execute(
        &s.db,
        &format!(
            "DELETE FROM audit_events WHERE tenant_id = $1 AND seq > {}",
            head - 3
        ),
        ta.as_uuid(),
    )
    .await;
    assert_eq!(n, 3);
    let r: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["first_bad_seq"], head - 2, "{r}");
    assert_eq!(r["events_checked"], head - 3, "{r}");
    s.stop().await;
}

/// Recomputes the chain from NDJSON lines; returns the events.
fn check_chain(text: &str, mut prev: String, mut seq: i64) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    for line in text.lines() {
        let e: StoredEvent = serde_json::from_str(line).unwrap();
        seq += 1;
        assert_eq!(e.seq, seq);
        assert_eq!(e.prev_hash, prev, "seq {seq}");
        assert_eq!(e.compute_hash(), e.hash, "seq {seq}");
        prev = e.hash.clone();
        out.push(e);
    }
    out
}

async fn export_streams_a_verifiable_chain_and_resumes(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    signup(&s, "beta", "owner@beta.test").await;
    let (ta, tb) = (tenant_id(&s, "acme").await, tenant_id(&s, "beta").await);
    // More than one export page (1,000 events).
    let many: Vec<NewEvent> = (0..1_100)
        .map(|i| {
            NewEvent::new(Actor::System, "records.record.updated")
                .details(serde_json::json!({ "i": i, "note": "quote \" and \u{e9}" }))
        })
        .collect();
    append(&s, ta, many).await;
    append(&s, tb, sample()).await;
    // The clock moved past the access token's lifetime: sign in again.
    let a = crate::auth::login_ok(&s, "owner@acme.test").await;
    let res = get(&s, &a, "/v1/audit/export").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let all = check_chain(&text, GENESIS_HASH.to_owned(), 0);
    assert!(all.iter().all(|e| e.tenant_id == ta));
    // The export is itself audited, before the stream starts.
    let last = all.last().unwrap();
    assert_eq!(last.action, "audit.events.exported");
    let head = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert!(head.ok);
    assert_eq!((last.seq, &last.hash), (head.head_seq, &head.head_hash));
    assert!(all.len() > 1_100);

    // Resume after 1,050: the rest, chaining on from event 1,050.
    let res = get(&s, &a, "/v1/audit/export?after=1050").await;
    let text = res.text().await.unwrap();
    let prev = all[1_049].hash.clone();
    let rest = check_chain(&text, prev, 1_050);
    assert_eq!(rest[0], all[1_050]);
    assert_eq!(rest.last().unwrap().action, "audit.events.exported");
    s.stop().await;
}

/// The server's own database role cannot change or remove events: grants on
/// PostgreSQL, triggers on SQLite. Nothing changes.
async fn events_are_append_only_for_the_server(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    let before = audit::verify_tenant(&s.db, ta).await.unwrap();
    for sql in [
        "UPDATE audit_events SET details = '{}' WHERE tenant_id = $1",
        "DELETE FROM audit_events WHERE tenant_id = $1",
    ] {
        let err = match (s.db.sqlite_pool(), s.db.postgres_app_pool()) {
            (Some(pool), _) => sqlx::query(sql)
                .bind(ta.as_uuid())
                .execute(pool)
                .await
                .map(|_| ()),
            (None, Some(pool)) => {
                let mut tx = pool.begin().await.unwrap();
                let role: (String, String) =
                    sqlx::query_as("SELECT current_user::text, session_user::text")
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                let login = crate::testkit::PG_LOGIN_ROLE.to_owned();
                assert_eq!(role, (login.clone(), login));
                sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
                    .bind(ta.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .bind(ta.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map(|_| ())
            }
            _ => unreachable!(),
        }
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("permission denied") || err.contains("append-only"),
            "{sql}: {err}"
        );
    }
    let after = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert_eq!(before, after);
    assert!(after.ok && after.events_checked > 0);
    s.stop().await;
}

#[test]
fn cli_export_writes_the_same_ndjson() {
    use crate::cli::{run, stockade};
    let dir = tempfile::tempdir().unwrap();
    for slug in ["acme", "beta"] {
        let out =
            run(stockade(dir.path()).args(["tenant", "create", "--slug", slug, "--name", "X"]));
        assert!(out.status.success());
    }
    let out = run(stockade(dir.path()).args(["audit", "export", "--tenant", "acme"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let all = check_chain(&text, GENESIS_HASH.to_owned(), 0);
    // The export is audited first (by `system`), so it ends its own stream.
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["tenancy.tenant.created", "audit.events.exported"]
    );
    assert_eq!(all[1].actor_type, "system");
    assert_eq!(all[1].details, r#"{"after":0}"#);
    let out =
        run(stockade(dir.path()).args(["audit", "export", "--tenant", "acme", "--after", "2"]));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rest = check_chain(&text, all[1].hash.clone(), 2);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].details, r#"{"after":2}"#);
    // The other tenant's chain is not touched by exporting acme's.
    let out = run(stockade(dir.path()).args(["audit", "export", "--tenant", "beta"]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(check_chain(&text, GENESIS_HASH.to_owned(), 0).len(), 2);
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert!(out.status.success());
    let out = run(stockade(dir.path()).args(["audit", "export", "--tenant", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    let out =
        run(stockade(dir.path()).args(["audit", "export", "--tenant", "acme", "--after", "-1"]));
    assert_eq!(out.status.code(), Some(2));
}

crate::both_servers!(
    read_filters_pages_and_isolation,
    bad_queries_are_400_problems,
    verify_reports_only_the_callers_chain,
    verify_catches_the_last_three_events_deleted,
    export_streams_a_verifiable_chain_and_resumes,
    events_are_append_only_for_the_server,
);
