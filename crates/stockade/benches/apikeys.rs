//! Criterion benchmark of API-key authentication (issue #7): the whole
//! per-request path of `Authorization: Bearer stk_…` — strict parse, global
//! public-id lookup, the tenant-scoped read of key + creator membership +
//! tenant, HMAC-SHA256 constant-time verify, the creator's role and the
//! scope intersection — then one permission check. Fresh migrated SQLite
//! file (WAL, synchronous=FULL), as the server opens it.
//! `authenticate_sqlite` is that path with the cache missing every time (the
//! clock moves past the cache's 5 s bound before each call, issue #8);
//! `authenticate_sqlite_cached` is a hit: parse, constant-time verify, date
//! checks, the map lookup.
//! Run: `cargo bench --bench apikeys`.

// reason: a benchmark harness aborts on any set-up failure; there is no caller
// to hand an error to, and a panic with a message is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::ExposeSecret;
use stockade::apikeys::{self, ApiKey, KeyEnv, NewKey};
use stockade::app::AppState;
use stockade::audit::RequestContext;
use stockade::clock::ManualClock;
use stockade::config::Config;
use stockade::db::Db;
use tokio::runtime::Runtime;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A server state on a fresh SQLite file with one tenant, one editor and
/// one key of theirs scoped to `records:read`; returns the state and key.
async fn fixture(dir: &std::path::Path) -> (AppState, Arc<ManualClock>, String) {
    let mut env = BTreeMap::new();
    env.insert("STOCKADE_DATA_DIR".to_owned(), dir.display().to_string());
    let config = Config::load(None, &env).expect("config");
    let keys = stockade::crypto::keys::load(&config).expect("keys");
    let db = Db::open(&config).await.expect("open SQLite");
    db.migrate().await.expect("migrate");
    db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
    let clock = Arc::new(ManualClock::new(t0()));
    let keyring = stockade::crypto::keyring::load(&db, &keys, clock.as_ref())
        .await
        .expect("keyring");
    let state = AppState::new(config, db.clone(), clock.clone(), keys, keyring).expect("state");
    let tenant = common::bench_tenant(&db, clock.as_ref(), &state.master()).await;
    // Before the write transaction: SQLite has one writer.
    let hmac = *apikeys::hmac_key(&state).await.expect("hmac key");
    let (user, mut tx) = common::bench_editor(&db, clock.as_ref(), &tenant).await;
    let key = ApiKey::generate(KeyEnv::Test).expect("key");
    apikeys::insert(
        &mut tx,
        &NewKey {
            id: uuid::Uuid::now_v7(),
            public_id: &key.public_id,
            name: "bench",
            scopes: &["records:read".to_owned()],
            hash: key.hash(&hmac),
            created_by: user.id,
            created_at: t0(),
            expires_at: None,
        },
    )
    .await
    .expect("insert key");
    tx.commit().await.expect("commit");
    (state, clock, key.encode().expose_secret().to_owned())
}

fn authenticate(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, clock, token) = rt.block_on(fixture(dir.path()));
    let ip = stockade::http::client_ip::ClientAddr::of([127, 0, 0, 1].into());
    let ctx = RequestContext::default();
    let hmac = *rt.block_on(apikeys::hmac_key(&state)).expect("hmac key");
    let mut group = c.benchmark_group("api_key");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let check = || async {
        let k = apikeys::authenticate(&state, black_box(&token), ip, &ctx)
            .await
            .expect("authenticated");
        assert!(k.permissions.allows("records:read", Some("orders")));
        assert!(!k.permissions.allows("records:write", None));
    };
    group.bench_function("authenticate_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            // Every entry is stale: the database path, then a fill.
            clock.advance(stockade::cache::CROSS_PROCESS_TTL);
            check().await;
        });
    });
    let hits = state.api_keys.cache_hits();
    group.bench_function("authenticate_sqlite_cached", |b| {
        b.to_async(&rt).iter(check);
    });
    assert!(
        state.api_keys.cache_hits() > hits,
        "the cache never answered"
    );
    let key = apikeys::parse(&token).expect("parse");
    let stored = key.hash(&hmac);
    group.bench_function("parse_and_verify", |b| {
        b.iter(|| {
            let k = apikeys::parse(black_box(&token)).expect("parse");
            assert!(k.verify(&hmac, black_box(&stored)));
        });
    });
    group.finish();
    rt.block_on(state.db.close());
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
