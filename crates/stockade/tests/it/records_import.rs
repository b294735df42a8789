//! CSV import into a collection (issue #5 item 5), on SQLite and PostgreSQL:
//! all or nothing, per-row errors with lines, limits, the formula rule,
//! keys, permissions and record rules on every row, audited.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{audit_actions, server, signup};
use crate::records::{audit_details, created_id};
use crate::roles::{call, member};
use crate::testkit::{Backend, TestServer};

async fn import(
    s: &TestServer,
    access: &str,
    query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.url(&format!("/v1/collections/orders/import{query}")))
        .bearer_auth(access)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn count(s: &TestServer, access: &str) -> usize {
    let (status, page) = call(
        s,
        Method::GET,
        "/v1/collections/orders/records?limit=200",
        access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    page["items"].as_array().unwrap().len()
}

async fn csv_import_is_all_or_nothing(backend: Backend) {
    let Some(s) = server(
        backend,
        &[
            ("STOCKADE_IMPORT_MAX_ROWS", "50"),
            ("STOCKADE_IMPORT_MAX_BYTES", "4096"),
        ],
    )
    .await
    else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    created_id(&s, &a.access, "orders", json!({"data": {}, "key": "TAKEN"})).await;
    let csv = "\u{feff}key,customer,total\nA-1,\"Smith, Ada\",-12.5\nA-2,Bob,3\n,Carol,\n";
    let (status, res) = import(&s, &a.access, "", "text/csv; charset=utf-8", csv).await;
    assert_eq!(status, StatusCode::CREATED, "{res}");
    assert_eq!(res, json!({"collection": "orders", "imported": 3}));
    let (_, page) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &a.access,
        None,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[1]["key"], "A-1");
    assert_eq!(
        items[1]["data"],
        json!({"customer": "Smith, Ada", "total": "-12.5"})
    );
    assert_eq!(items[3]["data"], json!({"customer": "Carol", "total": ""}));
    assert!(items[3].get("key").is_none());
    assert_eq!(
        audit_details(&s, "acme", "records.import.completed").await,
        vec![json!({"collection": "orders", "count": 3})]
    );

    // Every refusal changes nothing.
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "",
            "application/json",
            b"a\n1\n".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        ),
        (
            "",
            "text/csv",
            b"a\n\xff\xfe\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_not_utf8",
        ),
        (
            "",
            "text/csv",
            b"a,b\n1,2\n3\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_malformed",
        ),
        (
            "",
            "text/csv",
            b"a,a\n1,2\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_bad_header",
        ),
        (
            "",
            "text/csv",
            b"a,Bad Name\n1,2\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_bad_header",
        ),
        (
            "",
            "text/csv",
            b"a\n=1+1\nok\n@x\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_invalid",
        ),
        (
            "",
            "text/csv",
            b"key,a\nB-1,x\nB-1,y\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_invalid",
        ),
        (
            "",
            "text/csv",
            b"key,a\nB-2,x\nTAKEN,y\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.import_invalid",
        ),
        (
            "?formula_cells=maybe",
            "text/csv",
            b"a\n1\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "records.invalid_query",
        ),
        (
            "",
            "text/csv",
            format!("a\n{}", "1\n".repeat(51)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "records.import_too_many_rows",
        ),
        (
            "",
            "text/csv",
            format!("a\n{}\n", "x".repeat(5000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
        ),
    ];
    for (query, ct, body, want, code) in cases {
        let (status, p) = import(&s, &a.access, query, ct, body).await;
        assert_eq!(
            (status, p["code"].as_str().unwrap_or_default()),
            (want, code),
            "{p}"
        );
    }
    assert_eq!(
        count(&s, &a.access).await,
        4,
        "a refused import stored nothing"
    );
    // Each file refused for its content is audited in its own transaction
    // (the import rolled back): the code, the number of problems and the
    // first line, never a cell. Wrong media type and bad query: no file.
    let tenant = crate::audit::tenant_id(&s, "acme").await;
    let failed = crate::audit::events_of(&s.db, tenant, "records.import.failed").await;
    assert!(
        failed
            .iter()
            .all(|e| e.outcome == "failure" && e.target_id.as_deref() == Some("orders"))
    );
    let details: Vec<Value> = failed
        .iter()
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect();
    assert_eq!(
        details
            .iter()
            .map(|d| d["code"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "records.import_not_utf8",
            "records.import_malformed",
            "records.import_bad_header",
            "records.import_bad_header",
            "records.import_invalid",
            "records.import_invalid",
            "records.import_invalid",
            "records.import_too_many_rows",
            "request.too_large",
        ]
    );
    assert_eq!(
        details[0],
        json!({"collection": "orders", "code": "records.import_not_utf8", "errors": 1,
            "first_line": null})
    );
    assert_eq!(
        (&details[2]["errors"], &details[2]["first_line"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        (&details[4]["errors"], &details[4]["first_line"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(
        (&details[6]["errors"], &details[6]["first_line"]),
        (&json!(1), &json!(3))
    );
    for e in &failed {
        for cell in ["=1+1", "@x", "TAKEN", "B-1", "B-2"] {
            assert!(!e.details.contains(cell), "{}", e.details);
        }
    }
    assert!(
        stockade::audit::verify_tenant(&s.db, tenant)
            .await
            .unwrap()
            .ok
    );
    // Per-row errors carry lines and fields.
    let (_, p) = import(
        &s,
        &a.access,
        "",
        "text/csv",
        "a,b\n=1+1,ok\nfine,fine\nx,-2-3\n",
    )
    .await;
    assert_eq!(
        p["errors"],
        json!([
            {"line": 2, "field": "a", "message": p["errors"][0]["message"]},
            {"line": 4, "field": "b", "message": p["errors"][1]["message"]}
        ])
    );
    let (_, p) = import(&s, &a.access, "", "text/csv", "key,a\nB-2,x\nTAKEN,y\n").await;
    assert_eq!(p["errors"][0]["line"], 3);
    assert_eq!(p["errors"][0]["field"], "key");
    // Escaping stores formula cells prefixed with '.
    let (status, _) = import(
        &s,
        &a.access,
        "?formula_cells=escape",
        "text/csv",
        "a\n=HYPERLINK(\"x\")\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, page) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &a.access,
        None,
    )
    .await;
    assert_eq!(page["items"][4]["data"]["a"], "'=HYPERLINK(\"x\")");
    let imports = audit_actions(&s, "acme")
        .await
        .iter()
        .filter(|x| *x == "records.import.completed")
        .count();
    assert_eq!(imports, 2);
}

async fn csv_import_applies_permissions_and_rules(backend: Backend) {
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
            "name": "clerk",
            "permissions": ["records:read:orders", "records:write:orders"],
            "record_rules": [{"collection": "orders", "field": "owner_id"}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let clerk = member(&s, "acme", "clerk@acme.test", "clerk").await;
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let me: Value = crate::auth::me(&s, &clerk.access)
        .await
        .json()
        .await
        .unwrap();
    let clerk_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, p) = import(&s, &viewer.access, "", "text/csv", "a\n1\n").await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.forbidden"))
    );
    let other = uuid::Uuid::new_v4();
    let (status, p) = import(
        &s,
        &clerk.access,
        "",
        "text/csv",
        format!("owner_id,a\n{clerk_id},1\n{other},2\n"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["line"], 3);
    assert_eq!(count(&s, &owner.access).await, 0);
    // A rule hiding most of a collection: pages stop at the scan budget
    // (1000 decrypted rows) with a cursor, and the caller still sees all of
    // their own records.
    let mut csv = String::from("owner_id,n\n");
    for i in 0..1100 {
        csv.push_str(&format!("{other},{i}\n"));
    }
    csv.push_str(&format!("{clerk_id},mine\n"));
    let (status, res) = import(&s, &owner.access, "", "text/csv", csv).await;
    assert_eq!(
        (status, res["imported"].as_u64()),
        (StatusCode::CREATED, Some(1101))
    );
    let (_, first) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &clerk.access,
        None,
    )
    .await;
    assert_eq!(first["items"], json!([]));
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor after the scan budget");
    let (_, second) = call(
        &s,
        Method::GET,
        &format!("/v1/collections/orders/records?cursor={cursor}"),
        &clerk.access,
        None,
    )
    .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["data"]["n"], "mine");
    assert!(second.get("next_cursor").is_none());
}

crate::both_servers!(
    csv_import_is_all_or_nothing,
    csv_import_applies_permissions_and_rules
);
