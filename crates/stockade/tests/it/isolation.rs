//! The isolation property suite (SPEC §2.5): random tenants, roles, members,
//! invitations and sessions; every endpoint that takes an id, called with
//! another tenant's ids, answers 404, changes nothing and leaks nothing.
//! Each capability that adds an id-taking endpoint adds it to `attacks`.

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{audit_actions, me, server, signup};
use crate::testkit::{Backend, TestServer};

/// What tenant B holds in one case.
#[derive(Debug, Clone)]
struct World {
    roles: Vec<String>,
    /// Roles of members who join B by invitation.
    members: Vec<&'static str>,
    pending_invitations: usize,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::hash_set("[a-z]{3,12}", 1..3),
        prop::collection::vec(
            prop::sample::select(vec!["viewer", "editor", "admin"]),
            0..3,
        ),
        0..3usize,
    )
        .prop_map(|(roles, members, pending_invitations)| World {
            roles: roles.into_iter().map(|r| format!("role_{r}")).collect(),
            members,
            pending_invitations,
        })
}

/// B's state as B sees it, to compare before and after the attacks.
async fn snapshot(s: &TestServer, b: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/roles",
        "/v1/members",
        "/v1/invitations",
        "/v1/auth/sessions",
        "/v1/tenant/settings",
        "/v1/collections/orders/records",
        "/v1/api-keys",
    ] {
        let res = s
            .client
            .get(s.url(path))
            .bearer_auth(b)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        out.push(res.json().await.unwrap());
    }
    out
}

async fn populate(s: &TestServer, b: &str, w: &World) -> (Vec<String>, Vec<String>) {
    for role in &w.roles {
        let res = s
            .client
            .post(s.url("/v1/roles"))
            .bearer_auth(b)
            .json(&json!({"name": role, "permissions": ["records:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut users = Vec::new();
    for (i, role) in w.members.iter().enumerate() {
        let res = s
            .client
            .post(s.url("/v1/invitations"))
            .bearer_auth(b)
            .json(&json!({"email": format!("m{i}@b.test"), "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let token = res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = s.client.post(s.url("/v1/invitations/accept"))
            .json(&json!({"token": token, "name": format!("Member {i}"), "password": "Member-Strong-Passw0rd"}))
            .send().await.unwrap();
        let res = crate::mailbox::verify_accepted(s, res, "Member-Strong-Passw0rd").await;
        let access = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let m: Value = me(s, &access).await.json().await.unwrap();
        users.push(m["user"]["id"].as_str().unwrap().to_owned());
    }
    let mut invitations = Vec::new();
    for i in 0..w.pending_invitations {
        let res = s
            .client
            .post(s.url("/v1/invitations"))
            .bearer_auth(b)
            .json(&json!({"email": format!("p{i}@b.test"), "role": "viewer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        invitations.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (users, invitations)
}

async fn case(backend: Backend, w: World) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "tenant-a", "owner@a.test").await;
    let b = signup(&s, "tenant-b", "owner@b.test").await;
    let (b_users, b_invitations) = populate(&s, &b.access, &w).await;
    let b_owner: Value = me(&s, &b.access).await.json().await.unwrap();
    let b_session = b_owner["session_id"].as_str().unwrap().to_owned();
    let b_owner_id = b_owner["user"]["id"].as_str().unwrap().to_owned();
    let b_record = crate::records::created_id(
        &s,
        &b.access,
        "orders",
        json!({"data": {"secret": "b-only"}, "key": "B-1"}),
    )
    .await;
    let b_key: Value = s
        .client
        .post(s.url("/v1/api-keys"))
        .bearer_auth(&b.access)
        .json(&json!({"name": "b", "scopes": ["records:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_key_id = b_key["id"].as_str().unwrap().to_owned();
    let before = snapshot(&s, &b.access).await;
    let audit_before = audit_actions(&s, "tenant-b").await;

    // (method, path, body, the id that must not leak)
    let mut attacks: Vec<(reqwest::Method, String, Option<Value>, String)> = Vec::new();
    for role in &w.roles {
        attacks.push((
            reqwest::Method::GET,
            format!("/v1/roles/{role}"),
            None,
            role.clone(),
        ));
        attacks.push((
            reqwest::Method::PATCH,
            format!("/v1/roles/{role}"),
            Some(json!({"description": "x"})),
            role.clone(),
        ));
        attacks.push((
            reqwest::Method::DELETE,
            format!("/v1/roles/{role}"),
            None,
            role.clone(),
        ));
    }
    for user in b_users.iter().chain([&b_owner_id]) {
        attacks.push((
            reqwest::Method::PATCH,
            format!("/v1/members/{user}"),
            Some(json!({"role": "viewer"})),
            user.clone(),
        ));
        attacks.push((
            reqwest::Method::DELETE,
            format!("/v1/members/{user}"),
            None,
            user.clone(),
        ));
    }
    for inv in &b_invitations {
        attacks.push((
            reqwest::Method::DELETE,
            format!("/v1/invitations/{inv}"),
            None,
            inv.clone(),
        ));
    }
    for (method, body) in [
        (reqwest::Method::GET, None),
        (
            reqwest::Method::PATCH,
            Some(json!({"data": {"secret": "a"}})),
        ),
        (reqwest::Method::DELETE, None),
    ] {
        attacks.push((
            method,
            format!("/v1/collections/orders/records/{b_record}"),
            body,
            b_record.clone(),
        ));
    }
    attacks.push((
        reqwest::Method::DELETE,
        format!("/v1/auth/sessions/{b_session}"),
        None,
        b_session.clone(),
    ));

    for (method, path) in [
        (reqwest::Method::DELETE, format!("/v1/api-keys/{b_key_id}")),
        (
            reqwest::Method::POST,
            format!("/v1/api-keys/{b_key_id}/rotate"),
        ),
    ] {
        attacks.push((method, path, None, b_key_id.clone()));
    }

    for (method, path, body, id) in attacks {
        let mut req = s
            .client
            .request(method.clone(), s.url(&path))
            .bearer_auth(&a.access);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let text = res.text().await.unwrap();
        assert!(!text.contains(&id), "{method} {path} leaked {id}: {text}");
    }
    assert_eq!(snapshot(&s, &b.access).await, before, "tenant B changed");
    assert_eq!(
        audit_actions(&s, "tenant-b").await,
        audit_before,
        "tenant B's log changed"
    );
    // And A's own views never list B's objects.
    let a_view = snapshot(&s, &a.access).await;
    let text = serde_json::to_string(&a_view).unwrap();
    for id in b_users.iter().chain(&b_invitations).chain(&w.roles).chain([
        &b_session,
        &b_owner_id,
        &b_record,
        &b_key_id,
    ]) {
        assert!(!text.contains(id.as_str()), "A sees {id}");
    }
}

fn run(backend: Backend, w: World) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(case(backend, w));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn other_tenants_ids_are_not_found_on_sqlite(w in world()) {
        run(Backend::Sqlite, w);
    }

    #[test]
    fn other_tenants_ids_are_not_found_on_postgres(w in world()) {
        run(Backend::Postgres, w);
    }
}

// ---- API keys ----

/// One call with `bearer` (and a `Host` header when given); status and body.
async fn key_call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    host: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = s.client.request(method, s.url(path)).bearer_auth(bearer);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Tenant A's API key with `records:read` and `records:write`: B's record
/// ids are 404 for GET/PATCH/DELETE and leave B's record as it was, B's
/// records never appear in A's list, and the key cannot be taken to B's
/// subdomain or through a tenant switch.
async fn an_api_key_reaches_only_its_own_tenant(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TENANT_DOMAIN", "example.com")]).await else {
        return;
    };
    let a = signup(&s, "tenant-a", "owner@a.test").await;
    let b = signup(&s, "tenant-b", "owner@b.test").await;
    let orders = "/v1/collections/orders/records";
    let a_record =
        crate::records::created_id(&s, &a.access, "orders", json!({"data": {"n": 1}})).await;
    let b_record = crate::records::created_id(
        &s,
        &b.access,
        "orders",
        json!({"data": {"secret": "b-only"}, "key": "B-1"}),
    )
    .await;
    let (status, created) = key_call(
        &s,
        reqwest::Method::POST,
        "/v1/api-keys",
        &a.access,
        None,
        Some(json!({"name": "a", "scopes": ["records:read", "records:write"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let b_path = format!("{orders}/{b_record}");
    let (_, b_before) = key_call(&s, reqwest::Method::GET, &b_path, &b.access, None, None).await;
    let b_audit = audit_actions(&s, "tenant-b").await;

    for (method, body) in [
        (reqwest::Method::GET, None),
        (
            reqwest::Method::PATCH,
            Some(json!({"data": {"secret": "a"}})),
        ),
        (reqwest::Method::DELETE, None),
    ] {
        let (status, text) = key_call(&s, method.clone(), &b_path, &key, None, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {text}");
        assert!(!text.contains(&b_record), "{method} leaked: {text}");
        assert!(!text.contains("b-only"), "{method} leaked: {text}");
    }
    // A's own record works with the same key: the 404s are not a scope problem.
    let a_path = format!("{orders}/{a_record}");
    let (status, _) = key_call(&s, reqwest::Method::GET, &a_path, &key, None, None).await;
    assert_eq!(status, StatusCode::OK);
    // The list shows A's record only.
    let (status, list) = key_call(&s, reqwest::Method::GET, orders, &key, None, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(list.contains(&a_record), "{list}");
    assert!(
        !list.contains(&b_record),
        "A's key lists B's record: {list}"
    );
    assert!(!list.contains("b-only"), "{list}");
    // B's record and log are unchanged.
    let (_, b_after) = key_call(&s, reqwest::Method::GET, &b_path, &b.access, None, None).await;
    assert_eq!(b_after, b_before);
    assert_eq!(audit_actions(&s, "tenant-b").await, b_audit);

    // Another tenant's subdomain: 403, even for a route in scope; its own: 200.
    for (host, want, code) in [
        (
            "tenant-b.example.com",
            StatusCode::FORBIDDEN,
            "tenancy.subdomain_mismatch",
        ),
        ("tenant-a.example.com", StatusCode::OK, ""),
    ] {
        let (status, text) =
            key_call(&s, reqwest::Method::GET, orders, &key, Some(host), None).await;
        assert_eq!(status, want, "{host}: {text}");
        if !code.is_empty() {
            let p: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(p["code"], code);
        }
    }
    let (status, text) = key_call(
        &s,
        reqwest::Method::DELETE,
        &b_path,
        &key,
        Some("tenant-b.example.com"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    // No tenant switch with a key, whatever the target.
    for target in ["tenant-b", "tenant-a"] {
        let (status, text) = key_call(
            &s,
            reqwest::Method::POST,
            "/v1/auth/switch-tenant",
            &key,
            None,
            Some(json!({"tenant": target})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}: {text}");
        let p: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["code"], "auth.api_key_not_allowed");
    }
    let (_, b_after) = key_call(&s, reqwest::Method::GET, &b_path, &b.access, None, None).await;
    assert_eq!(b_after, b_before, "B's record changed");
    s.stop().await;
}

crate::both_servers!(an_api_key_reaches_only_its_own_tenant);
