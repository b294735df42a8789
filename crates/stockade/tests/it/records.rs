//! Records end to end (SPEC §2.10, issue #5), on SQLite and PostgreSQL:
//! create/get/list/patch/delete, cursors and filters, keys, If-Match,
//! grants and record rules, encryption at rest, integrity of swapped rows.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{audit_actions, me, server, signup};
use crate::roles::{call, member};
use crate::testkit::{Backend, TestServer};

pub async fn create(s: &TestServer, access: &str, coll: &str, body: Value) -> (StatusCode, Value) {
    call(
        s,
        Method::POST,
        &format!("/v1/collections/{coll}/records"),
        access,
        Some(body),
    )
    .await
}

pub async fn created_id(s: &TestServer, access: &str, coll: &str, body: Value) -> String {
    let (status, v) = create(s, access, coll, body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

pub async fn patch(
    s: &TestServer,
    access: &str,
    path: &str,
    if_match: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = s.client.patch(s.url(path)).bearer_auth(access).json(&body);
    if let Some(v) = if_match {
        req = req.header("if-match", v);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

pub async fn user_id(s: &TestServer, access: &str) -> String {
    let v: Value = me(s, access).await.json().await.unwrap();
    v["user"]["id"].as_str().unwrap().to_owned()
}

async fn crud_round_trip(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let (status, rec) = create(
        &s,
        &a.access,
        "orders",
        json!({"data": {"customer": "Ada", "total": 12.5}, "key": "INV-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rec}");
    assert_eq!(rec["collection"], "orders");
    assert_eq!(rec["key"], "INV-1");
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["data"], json!({"customer": "Ada", "total": 12.5}));
    let id = rec["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/collections/orders/records/{id}");
    let res = s
        .client
        .get(s.url(&path))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let got: Value = res.json().await.unwrap();
    assert_eq!(got, rec);
    // The collection was created implicitly.
    let (status, coll) = call(&s, Method::GET, "/v1/collections/orders", &a.access, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(coll["indexed_fields"], json!([]));

    // Bad input: 4xx with a stable code, nothing stored.
    for (body, want, code) in [
        (
            json!({"data": {}, "tenant_id": "x"}),
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        ),
        (
            json!({"data": [1, 2]}),
            StatusCode::BAD_REQUEST,
            "records.invalid_data",
        ),
        (
            json!({"data": "x"}),
            StatusCode::BAD_REQUEST,
            "records.invalid_data",
        ),
        (
            json!({"key": "k"}),
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        ),
        (
            json!({"data": {}, "key": ""}),
            StatusCode::BAD_REQUEST,
            "records.invalid_key",
        ),
        (
            json!({"data": {"blob": "x".repeat(300 * 1024)}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "records.too_large",
        ),
    ] {
        let (status, p) = create(&s, &a.access, "orders", body).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (want, code), "{p}");
    }
    // The import route's larger limit (20 MiB by default) does not widen the
    // JSON body limit (1 MiB).
    let big = json!({"data": {"x": "y".repeat(1024 * 1024 + 10)}});
    let res = s
        .client
        .post(s.url("/v1/collections/orders/records"))
        .bearer_auth(&a.access)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "request.too_large");
    for coll in ["Orders", "1x", "a-b", "_x"] {
        let (status, p) = create(&s, &a.access, coll, json!({"data": {}})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(p["code"], "records.invalid_collection");
    }
    for bad_id in ["not-a-uuid", "123", &uuid::Uuid::new_v4().to_string()] {
        let (status, p) = call(
            &s,
            Method::GET,
            &format!("/v1/collections/orders/records/{bad_id}"),
            &a.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad_id}");
        assert_eq!(p["code"], "records.not_found");
    }
    // The same id under another collection is not found.
    let (status, _) = call(
        &s,
        Method::GET,
        &format!("/v1/collections/invoices/records/{id}"),
        &a.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // PATCH: If-Match required (428), must match (412), merges, bumps.
    let change = json!({"data": {"total": 20, "customer": null, "status": "paid"}});
    let (status, p) = patch(&s, &a.access, &path, None, change.clone()).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(p["code"], "records.if_match_required");
    let (status, p) = patch(&s, &a.access, &path, Some("\"7\""), change.clone()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(p["code"], "records.version_mismatch");
    let (status, p) = patch(&s, &a.access, &path, Some("seven"), change.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["code"], "records.invalid_if_match");
    let (status, p) = patch(
        &s,
        &a.access,
        &path,
        Some("1"),
        json!({"data": {}, "version": 9}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    let (status, updated) = patch(&s, &a.access, &path, Some("\"1\""), change.clone()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["key"], "INV-1");
    assert_eq!(updated["data"], json!({"total": 20, "status": "paid"}));
    // A stale version now fails.
    let (status, _) = patch(&s, &a.access, &path, Some("\"1\""), change).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, got) = call(&s, Method::GET, &path, &a.access, None).await;
    assert_eq!(got, updated);

    // DELETE: a wrong If-Match is refused; then 204, then 404.
    let res = s
        .client
        .delete(s.url(&path))
        .bearer_auth(&a.access)
        .header("if-match", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let (status, _) = call(&s, Method::DELETE, &path, &a.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for m in [Method::GET, Method::DELETE] {
        let (status, _) = call(&s, m, &path, &a.access, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Audited, without the body.
    let actions = audit_actions(&s, "acme").await;
    for action in [
        "records.record.created",
        "records.record.updated",
        "records.record.deleted",
    ] {
        assert_eq!(
            actions.iter().filter(|a| *a == action).count(),
            1,
            "{action}: {actions:?}"
        );
    }
    let details = audit_details(&s, "acme", "records.record.updated").await;
    assert_eq!(details, vec![json!({"collection": "orders", "version": 2})]);
}

/// The details of every audit event of `action` in tenant `slug`.
pub async fn audit_details(s: &TestServer, slug: &str, action: &str) -> Vec<Value> {
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
            vec![action.into()],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.0).unwrap())
        .collect()
}

async fn keys_are_unique_per_collection_and_tenant(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "bolt", "owner@bolt.test").await;
    created_id(&s, &a.access, "orders", json!({"data": {}, "key": "K-1"})).await;
    let (status, p) = create(
        &s,
        &a.access,
        "orders",
        json!({"data": {"x": 1}, "key": "K-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "records.key_conflict");
    created_id(&s, &a.access, "invoices", json!({"data": {}, "key": "K-1"})).await;
    created_id(&s, &b.access, "orders", json!({"data": {}, "key": "K-1"})).await;
    let (_, page) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &a.access,
        None,
    )
    .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "the conflict stored nothing"
    );
}

async fn list_paginates_and_filters(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let status = if i % 2 == 0 { "paid" } else { "open" };
        ids.push(
            created_id(
                &s,
                &a.access,
                "orders",
                json!({"data": {"n": i, "status": status, "note": {"deep": i}}}),
            )
            .await,
        );
    }
    // Cursor pagination, in creation order, every record exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/collections/orders/records?limit=3".to_owned(),
            Some(c) => format!("/v1/collections/orders/records?limit=3&cursor={c}"),
        };
        let (status, page) = call(&s, Method::GET, &path, &viewer.access, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for (q, code) in [
        ("limit=0", "records.invalid_limit"),
        ("limit=201", "records.invalid_limit"),
        ("cursor=garbage", "records.invalid_cursor"),
        ("filter[status]=paid", "records.field_not_indexed"),
        ("filter[Bad]=1", "records.field_not_indexed"),
        ("order=id", "records.invalid_query"),
    ] {
        let (status, p) = call(
            &s,
            Method::GET,
            &format!("/v1/collections/orders/records?{q}"),
            &a.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(p["code"], code, "{q}");
    }
    // Declaring indexed fields needs settings:manage, and checks names.
    let decl = json!({"indexed_fields": ["status", "n"]});
    let (status, p) = call(
        &s,
        Method::PUT,
        "/v1/collections/orders",
        &viewer.access,
        Some(decl.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["code"], "rbac.forbidden");
    for bad in [
        json!({"indexed_fields": ["Status"]}),
        json!({"indexed_fields": ["$key"]}),
        json!({"indexed_fields": "status"}),
        json!({"fields": []}),
    ] {
        let (status, _) = call(
            &s,
            Method::PUT,
            "/v1/collections/orders",
            &a.access,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, coll) = call(
        &s,
        Method::PUT,
        "/v1/collections/orders",
        &a.access,
        Some(decl),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{coll}");
    assert_eq!(coll["indexed_fields"], json!(["n", "status"]));
    // The index was rebuilt for the existing records.
    let list = |q: &'static str| {
        let s = &s;
        let access = viewer.access.clone();
        async move {
            let (status, page) = call(
                s,
                Method::GET,
                &format!("/v1/collections/orders/records?{q}"),
                &access,
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{q}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let paid: Vec<String> = ids.iter().step_by(2).cloned().collect();
    assert_eq!(list("filter[status]=paid").await, paid);
    assert_eq!(
        list("filter%5Bstatus%5D=paid&filter[n]=4").await,
        vec![ids[4].clone()]
    );
    assert_eq!(
        list("filter[n]=3&filter[status]=paid").await,
        Vec::<String>::new()
    );
    assert_eq!(list("filter[status]=PAID").await, Vec::<String>::new());
    // Records written after the declaration are indexed; updates move them.
    let late = created_id(&s, &a.access, "orders", json!({"data": {"status": "paid"}})).await;
    let (status, _) = patch(
        &s,
        &a.access,
        &format!("/v1/collections/orders/records/{}", ids[0]),
        Some("1"),
        json!({"data": {"status": "void"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut want: Vec<String> = paid[1..].to_vec();
    want.push(late);
    assert_eq!(list("filter[status]=paid").await, want);
    assert_eq!(list("filter[status]=void").await, vec![ids[0].clone()]);
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"records.collection.updated".to_owned())
    );
    let details = audit_details(&s, "acme", "records.collection.updated").await;
    assert_eq!(details[0]["new"], json!(["n", "status"]));
    // A collection nobody wrote lists empty; an unknown one is 404 on GET.
    assert_eq!(
        call(
            &s,
            Method::GET,
            "/v1/collections/ghosts/records",
            &viewer.access,
            None
        )
        .await
        .1["items"],
        json!([])
    );
    let (status, p) = call(
        &s,
        Method::GET,
        "/v1/collections/ghosts",
        &viewer.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(p["code"], "records.collection_not_found");
}

crate::both_servers!(
    crud_round_trip,
    keys_are_unique_per_collection_and_tenant,
    list_paginates_and_filters,
);
