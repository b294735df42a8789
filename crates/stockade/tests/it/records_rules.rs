//! Per-collection grants and record rules on records (issue #5 item 2), on
//! SQLite and PostgreSQL: outside the rule 404, filtered lists, 403 on writes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::auth::{server, signup};
use crate::records::{create, created_id, patch, user_id};
use crate::roles::{call, member};
use crate::testkit::Backend;

async fn grants_and_record_rules(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = call(
        &s,
        Method::POST,
        "/v1/roles",
        &owner.access,
        Some(json!({
            "name": "driver",
            "permissions": ["records:read:runs", "records:write:runs"],
            "record_rules": [{"collection": "runs", "field": "driver_id"}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let d1 = member(&s, "acme", "d1@acme.test", "driver").await;
    let d2 = member(&s, "acme", "d2@acme.test", "driver").await;
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let (d1_id, d2_id) = (user_id(&s, &d1.access).await, user_id(&s, &d2.access).await);
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..5 {
        mine.push(
            created_id(
                &s,
                &owner.access,
                "runs",
                json!({"data": {"driver_id": d1_id, "i": i}}),
            )
            .await,
        );
        theirs.push(
            created_id(
                &s,
                &owner.access,
                "runs",
                json!({"data": {"driver_id": d2_id, "i": i}}),
            )
            .await,
        );
    }
    created_id(&s, &owner.access, "runs", json!({"data": {"i": 99}})).await;
    created_id(
        &s,
        &owner.access,
        "orders",
        json!({"data": {"driver_id": d1_id}}),
    )
    .await;

    // Lists hold only the driver's own runs, across pages.
    let mut seen = Vec::new();
    let mut path = "/v1/collections/runs/records?limit=2".to_owned();
    loop {
        let (status, page) = call(&s, Method::GET, &path, &d1.access, None).await;
        assert_eq!(status, StatusCode::OK);
        for r in page["items"].as_array().unwrap() {
            assert_eq!(r["data"]["driver_id"], d1_id.as_str());
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/collections/runs/records?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, mine);
    // Another driver's run: 404 on get, patch and delete, unchanged.
    let other = format!("/v1/collections/runs/records/{}", theirs[0]);
    let (status, p) = call(&s, Method::GET, &other, &d1.access, None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("records.not_found"))
    );
    let (status, _) = patch(&s, &d1.access, &other, Some("1"), json!({"data": {"i": 0}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&s, Method::DELETE, &other, &d1.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, got) = call(&s, Method::GET, &other, &d2.access, None).await;
    assert_eq!((status, got["version"].as_i64()), (StatusCode::OK, Some(1)));
    // Writes that would leave the rule: 403 records.rule_violation.
    for data in [
        json!({"driver_id": d2_id}),
        json!({"i": 1}),
        json!({"driver_id": 7}),
    ] {
        let (status, p) = create(&s, &d1.access, "runs", json!({"data": data})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{data}");
        assert_eq!(p["code"], "records.rule_violation");
    }
    let own = format!("/v1/collections/runs/records/{}", mine[0]);
    let (status, p) = patch(
        &s,
        &d1.access,
        &own,
        Some("1"),
        json!({"data": {"driver_id": d2_id}}),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("records.rule_violation"))
    );
    let (status, _) = patch(&s, &d1.access, &own, Some("1"), json!({"data": {"i": 42}})).await;
    assert_eq!(status, StatusCode::OK);
    created_id(
        &s,
        &d1.access,
        "runs",
        json!({"data": {"driver_id": d1_id}}),
    )
    .await;
    let (status, _) = call(&s, Method::DELETE, &own, &d1.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Per-collection grants: runs only.
    let (status, p) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &d1.access,
        None,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.forbidden"))
    );
    let (status, _) = create(
        &s,
        &d1.access,
        "orders",
        json!({"data": {"driver_id": d1_id}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // viewer: reads everything, writes nothing.
    let (_, page) = call(
        &s,
        Method::GET,
        "/v1/collections/runs/records?limit=200",
        &viewer.access,
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 11);
    let (status, p) = create(&s, &viewer.access, "runs", json!({"data": {}})).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.forbidden"))
    );
    let (status, _) = call(&s, Method::DELETE, &other, &viewer.access, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

crate::both_servers!(grants_and_record_rules);
