//! Criterion benchmark of the records read path: one page of 50 records of
//! about 2 KiB each, read and decrypted through `records::list::scan`, the
//! function `GET /v1/collections/{c}/records` runs after its permission and
//! query checks (blind-index query, AES-256-GCM open with the row's
//! associated data, JSON parse, rule check), including the per-request load
//! of the tenant's keys. On a fresh, migrated SQLite file (WAL,
//! synchronous=FULL, as the server opens it). Run: `cargo bench --bench records`.

// reason: a benchmark harness aborts on any set-up failure; there is no caller
// to hand an error to, and a panic with a message is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use stockade::clock::{Clock, ManualClock};
use stockade::config::Config;
use stockade::crypto::envelope;
use stockade::db::Db;
use stockade::records::access::Access;
use stockade::records::cipher::{StoredDocument, seal_document};
use stockade::records::list::{ListQuery, scan};
use stockade::records::store::{self, NewRow};

fn list_page(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = BTreeMap::new();
    env.insert(
        "STOCKADE_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    );
    let cfg = Config::load(None, &env).expect("config");
    let master = stockade::crypto::keys::load(&cfg).expect("keys").master;
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
    ));
    let (db, tenant) = rt.block_on(async {
        let db = Db::open_sqlite_file(&dir.path().join("bench.db"))
            .await
            .expect("db");
        db.migrate().await.expect("migrate");
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        let tenant = common::bench_tenant(&db, clock.as_ref(), &master).await.id;
        let mut tx = db.tenant_tx(tenant).await.expect("tx");
        let keys = envelope::load(&mut tx, &master, clock.as_ref())
            .await
            .expect("keys");
        store::ensure_collection(&mut tx, "orders", clock.now())
            .await
            .expect("collection");
        for i in 0..50 {
            let id = uuid::Uuid::now_v7();
            let data = serde_json::json!({
                "customer": format!("Customer {i}"),
                "status": "paid",
                "notes": "x".repeat(1900),
                "total": i,
            });
            let doc = StoredDocument { key: None, data };
            let (body, key_version) = seal_document(&keys, "orders", id, &doc).expect("seal");
            store::insert(
                &mut tx,
                NewRow {
                    id,
                    collection: "orders",
                    key_index: None,
                    body,
                    key_version,
                    created_by: uuid::Uuid::nil(),
                    now: clock.now(),
                },
            )
            .await
            .expect("insert");
        }
        tx.commit().await.expect("commit");
        (db, tenant)
    });
    let access = Access {
        collection: "orders".to_owned(),
        user: uuid::Uuid::nil(),
        rule_field: None,
    };
    let query = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    let mut group = c.benchmark_group("records");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("list_page_50x2KiB_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            let mut tx = db.tenant_read(tenant).await.expect("tx");
            let keys = envelope::load(&mut tx, &master, clock.as_ref())
                .await
                .expect("keys");
            let page = scan(&mut tx, &keys, &access, &query, &[])
                .await
                .expect("page");
            assert_eq!(page.items.len(), 50);
            black_box(page)
        });
    });
    group.finish();
}

criterion_group!(benches, list_page);
criterion_main!(benches);
