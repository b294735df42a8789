//! Records at rest (SPEC §2.9, issue #5 item 3): bodies only as ciphertext,
//! keys and filter values only as blind indexes; ciphertexts swapped between
//! rows or tenants, or rows moved to another collection, answer
//! `records.integrity` and never the other row's data.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{server, signup};
use crate::records::created_id;
use crate::roles::call;
use crate::testkit::{Backend, TestServer};

const MARKER: &str = "ZEBRA-MARKER-7f3a9c";

async fn sqlite_records_are_encrypted_at_rest() {
    let Some(s) = server(Backend::Sqlite, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    write_markers(&s, &a.access).await;
    // The database file and its write-ahead log, as bytes.
    let dir = s.state.config.data_dir.clone();
    let mut checked = 0;
    for name in ["stockade.db", "stockade.db-wal"] {
        let path = dir.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            checked += bytes.len();
            for needle in needles() {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    path.display()
                );
            }
        }
    }
    assert!(checked > 0, "no database file was read");
}

async fn postgres_records_are_encrypted_at_rest() {
    let Some(s) = server(Backend::Postgres, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    write_markers(&s, &a.access).await;
    // As the superuser, past row-level security: every column as text.
    let pool = &crate::testkit::owner_pool(&s.db).await;
    let mut dump = String::new();
    for table in ["records", "record_index", "collections", "audit_events"] {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table} is empty");
        for (r,) in rows {
            dump.push_str(&r);
        }
    }
    // The binary columns as raw bytes (the text form above shows them in hex).
    for sql in [
        "SELECT body FROM records",
        "SELECT COALESCE(key_index, '') FROM records",
        "SELECT value FROM record_index",
    ] {
        let raw: Vec<(Vec<u8>,)> = sqlx::query_as(sql).fetch_all(pool).await.unwrap();
        for (bytes,) in raw {
            dump.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for needle in needles() {
        assert!(
            !dump.contains(needle.as_str()),
            "{needle} found in PostgreSQL"
        );
    }
}

fn needles() -> Vec<String> {
    vec![
        MARKER.to_owned(),
        format!("KEY-{MARKER}"),
        format!("IDX-{MARKER}"),
        "customer_name_field".to_owned(),
    ]
}

/// A record whose body, key and indexed field each carry the marker.
async fn write_markers(s: &TestServer, access: &str) {
    let (status, _) = call(
        s,
        Method::PUT,
        "/v1/collections/orders",
        access,
        Some(json!({"indexed_fields": ["status"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = created_id(
        s,
        access,
        "orders",
        json!({"data": {"customer_name_field": MARKER, "status": format!("IDX-{MARKER}")},
               "key": format!("KEY-{MARKER}")}),
    )
    .await;
    // It reads back, and the filter finds it.
    let (_, got) = call(
        s,
        Method::GET,
        &format!("/v1/collections/orders/records/{id}"),
        access,
        None,
    )
    .await;
    assert_eq!(got["data"]["customer_name_field"], MARKER);
    let (_, page) = call(
        s,
        Method::GET,
        &format!("/v1/collections/orders/records?filter[status]=IDX-{MARKER}"),
        access,
        None,
    )
    .await;
    assert_eq!(page["items"][0]["id"], id.as_str());
}

/// Runs `UPDATE records SET <set> WHERE id = $2` with `$1` bound to `value`.
async fn raw_update(s: &TestServer, set: &str, value: RawValue, id: Uuid) {
    let sql = format!("UPDATE records SET {set} WHERE id = $2");
    let n = if let Some(pool) = s.db.sqlite_pool() {
        let q = sqlx::query(&sql);
        let q = match value {
            RawValue::Bytes(b) => q.bind(b),
            RawValue::Text(t) => q.bind(t),
        };
        q.bind(id).execute(pool).await.unwrap().rows_affected()
    } else {
        let pool = &crate::testkit::owner_pool(&s.db).await;
        let q = sqlx::query(&sql);
        let q = match value {
            RawValue::Bytes(b) => q.bind(b),
            RawValue::Text(t) => q.bind(t),
        };
        q.bind(id).execute(pool).await.unwrap().rows_affected()
    };
    assert_eq!(n, 1);
}

enum RawValue {
    Bytes(Vec<u8>),
    Text(String),
}

async fn body_of(s: &TestServer, id: Uuid) -> Vec<u8> {
    let sql = "SELECT body FROM records WHERE id = $1";
    if let Some(pool) = s.db.sqlite_pool() {
        let (b,): (Vec<u8>,) = sqlx::query_as(sql).bind(id).fetch_one(pool).await.unwrap();
        return b;
    }
    let pool = &crate::testkit::owner_pool(&s.db).await;
    let (b,): (Vec<u8>,) = sqlx::query_as(sql).bind(id).fetch_one(pool).await.unwrap();
    b
}

async fn expect_integrity(s: &TestServer, access: &str, path: &str, secrets: &[&str]) {
    let (status, p) = call(s, Method::GET, path, access, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {p}");
    assert_eq!(p["code"], "records.integrity", "{path}");
    let text = p.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{path} leaked {secret}");
    }
}

async fn swapped_ciphertexts_are_integrity_errors(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "bolt", "owner@bolt.test").await;
    let one: Uuid = created_id(
        &s,
        &a.access,
        "orders",
        json!({"data": {"who": "ONE-secret"}}),
    )
    .await
    .parse()
    .unwrap();
    let two: Uuid = created_id(
        &s,
        &a.access,
        "orders",
        json!({"data": {"who": "TWO-secret"}}),
    )
    .await
    .parse()
    .unwrap();
    let theirs: Uuid = created_id(
        &s,
        &b.access,
        "orders",
        json!({"data": {"who": "BOLT-secret"}}),
    )
    .await
    .parse()
    .unwrap();
    created_id(&s, &a.access, "invoices", json!({"data": {}})).await;
    let secrets = ["ONE-secret", "TWO-secret", "BOLT-secret"];
    let (b1, b2, b3) = (
        body_of(&s, one).await,
        body_of(&s, two).await,
        body_of(&s, theirs).await,
    );

    // Between two rows of one tenant.
    raw_update(&s, "body = $1", RawValue::Bytes(b2.clone()), one).await;
    expect_integrity(
        &s,
        &a.access,
        &format!("/v1/collections/orders/records/{one}"),
        &secrets,
    )
    .await;
    expect_integrity(&s, &a.access, "/v1/collections/orders/records", &secrets).await;
    let (status, _) = s_patch(&s, &a.access, one).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    raw_update(&s, "body = $1", RawValue::Bytes(b1.clone()), one).await;
    let (status, got) = call(
        &s,
        Method::GET,
        &format!("/v1/collections/orders/records/{one}"),
        &a.access,
        None,
    )
    .await;
    assert_eq!(
        (status, got["data"]["who"].as_str()),
        (StatusCode::OK, Some("ONE-secret"))
    );

    // From another tenant.
    raw_update(&s, "body = $1", RawValue::Bytes(b3), two).await;
    expect_integrity(
        &s,
        &a.access,
        &format!("/v1/collections/orders/records/{two}"),
        &secrets,
    )
    .await;
    expect_integrity(&s, &a.access, "/v1/collections/orders/records", &secrets).await;
    raw_update(&s, "body = $1", RawValue::Bytes(b2), two).await;

    // A row moved to another collection by editing its column.
    raw_update(
        &s,
        "collection = $1",
        RawValue::Text("invoices".to_owned()),
        one,
    )
    .await;
    expect_integrity(
        &s,
        &a.access,
        &format!("/v1/collections/invoices/records/{one}"),
        &secrets,
    )
    .await;
    expect_integrity(&s, &a.access, "/v1/collections/invoices/records", &secrets).await;
    let (status, _) = call(
        &s,
        Method::GET,
        &format!("/v1/collections/orders/records/{one}"),
        &a.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The untouched collection still lists, without the moved row.
    let (status, page) = call(
        &s,
        Method::GET,
        "/v1/collections/orders/records",
        &a.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let items: Vec<Value> = page["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["data"]["who"], "TWO-secret");
}

async fn s_patch(s: &TestServer, access: &str, id: Uuid) -> (StatusCode, Value) {
    let res = s
        .client
        .patch(s.url(&format!("/v1/collections/orders/records/{id}")))
        .bearer_auth(access)
        .header("if-match", "1")
        .json(&json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

mod at_rest {
    #[tokio::test]
    async fn sqlite_records_are_encrypted_at_rest() {
        super::sqlite_records_are_encrypted_at_rest().await;
    }
    #[tokio::test]
    async fn postgres_records_are_encrypted_at_rest() {
        super::postgres_records_are_encrypted_at_rest().await;
    }
}

crate::both_servers!(swapped_ciphertexts_are_integrity_errors);
