//! Criterion micro-benchmarks of the hot paths, for comparison with the cost
//! table in the architecture notes. Run: `cargo bench --bench core`.
//!
//! Only the crate's public API is used. Database benches run on a fresh,
//! migrated SQLite file in a temporary directory (WAL, synchronous=FULL, as
//! the server opens it); the cluster-mode session benches on a fresh
//! PostgreSQL database and the local Redis (`STOCKADE_TEST_PG_URL`,
//! `STOCKADE_TEST_REDIS_URL`), skipped when either does not answer.

// reason: a benchmark harness aborts on any set-up failure; there is no caller
// to hand an error to, and a panic with a message is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use secrecy::SecretString;
use stockade::audit::{self, Actor, NewEvent, RequestContext, Target};
use stockade::clock::{Clock, ManualClock, SystemClock};
use stockade::crypto::envelope;
use stockade::crypto::jwt::{ACCESS_TOKEN_TTL, Claims, Keyring};
use stockade::crypto::keys::{MasterKey, SigningMaterial};
use stockade::crypto::seal;
use stockade::db::{BackendKind, Db};
use stockade::identity::password::Hasher;
use stockade::ids::{SessionId, TenantId, UserId};
use stockade::rbac;
use stockade::records::cipher::{self, StoredDocument};
use stockade::sessions::{self, RefreshToken, SessionCache, SessionPolicy};
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

const ISSUER: &str = "https://app.example.com";
const AUDIENCE: &str = "stockade";

/// Short measurement windows keep the whole suite to a few minutes.
fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fixed instant, so token expiry never depends on when the bench runs.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

/// Claims shaped like the ones `sessions` issues (uuid ids, 15-minute expiry).
fn claims(now: DateTime<Utc>) -> Claims {
    let iat = now.timestamp();
    Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: UserId::new().to_string(),
        tid: TenantId::new().to_string(),
        sid: SessionId::new().to_string(),
        iat,
        exp: iat + ACCESS_TOKEN_TTL.num_seconds(),
        jti: uuid::Uuid::new_v4().to_string(),
        act: None,
        amr: Vec::new(),
    }
}

fn eddsa_keyring() -> Keyring {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    Keyring::from_material(&SigningMaterial::Ed25519 {
        key,
        kid: "bench-ed25519".to_owned(),
    })
    .expect("EdDSA keyring")
}

fn hs256_keyring() -> Keyring {
    Keyring::from_material(&SigningMaterial::Hs256 {
        secret: Zeroizing::new(vec![0x5a; 64]),
        kid: "bench-hs256".to_owned(),
    })
    .expect("HS256 keyring")
}

fn token(c: &mut Criterion) {
    let now = t0();
    let claims = claims(now);
    let ed = eddsa_keyring();
    let hs = hs256_keyring();
    let ed_token = ed.issue(&claims).expect("issue EdDSA");
    let hs_token = hs.issue(&claims).expect("issue HS256");
    assert!(ed.verify(&ed_token, now, ISSUER, AUDIENCE).is_ok());
    assert!(hs.verify(&hs_token, now, ISSUER, AUDIENCE).is_ok());

    let mut group = c.benchmark_group("token");
    configure(&mut group);
    group.bench_function("verify_eddsa", |b| {
        b.iter(|| {
            ed.verify(black_box(&ed_token), now, ISSUER, AUDIENCE)
                .expect("valid")
        });
    });
    group.bench_function("verify_hs256", |b| {
        b.iter(|| {
            hs.verify(black_box(&hs_token), now, ISSUER, AUDIENCE)
                .expect("valid")
        });
    });
    group.bench_function("issue_eddsa", |b| {
        b.iter(|| ed.issue(black_box(&claims)).expect("signed"));
    });
    group.finish();
}

/// A fresh migrated SQLite database with one tenant, one user who is a member
/// and one live session of that user. The temporary directory must outlive
/// the database.
struct Fixture {
    db: Db,
    tenant: TenantId,
    user: UserId,
    session: SessionId,
    now: DateTime<Utc>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_sqlite_file(&dir.path().join("stockade.db"))
        .await
        .expect("open SQLite");
    populate(db, dir).await
}

/// The fixture on a fresh PostgreSQL database, with a session cache using
/// the Redis generation; `None` (the bench is skipped) when PostgreSQL or
/// Redis does not answer. Returns the admin connection that drops the
/// database afterwards, and its name.
async fn pg_redis_fixture() -> Option<(Fixture, SessionCache, sqlx::PgConnection, String)> {
    use sqlx::Connection;
    let admin = std::env::var("STOCKADE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let redis_url = std::env::var("STOCKADE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping session/*_postgres*: PostgreSQL not reachable: {e}");
            return None;
        }
    };
    let client = redis::Client::open(redis_url.as_str()).expect("Redis URL");
    if let Err(e) = client.get_multiplexed_async_connection().await {
        eprintln!("skipping session/*_postgres*: Redis not reachable: {e}");
        return None;
    }
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (db, url) = common::pg_serving_db(&admin, &name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("STOCKADE_DATA_DIR", dir.path().display().to_string()),
        ("STOCKADE_DATABASE_URL", url),
        ("STOCKADE_REDIS_URL", redis_url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = stockade::config::Config::load(None, &env).expect("config");
    let f = populate(db, dir).await;
    let cache = SessionCache::new(&config, &f.db);
    Some((f, cache, conn, name))
}

/// `db` is migrated already on PostgreSQL (by its owner).
async fn populate(db: Db, dir: tempfile::TempDir) -> Fixture {
    if db.kind() == stockade::db::BackendKind::Sqlite {
        db.migrate().await.expect("migrate");
    }
    db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
    let clock = Arc::new(ManualClock::new(t0()));
    let tenant = common::bench_tenant(&db, clock.as_ref(), &bench_master()).await;
    let (user, mut tx) = common::bench_editor(&db, clock.as_ref(), &tenant).await;
    let (session, _refresh) = sessions::create(
        &mut tx,
        clock.as_ref(),
        user.id,
        &SessionPolicy::default(),
        &RequestContext::default(),
        &[stockade_core::mfa::amr::Amr::Pwd],
    )
    .await
    .expect("create session");
    tx.commit().await.expect("commit");
    Fixture {
        db,
        tenant: tenant.id,
        user: user.id,
        session: session.id,
        now: clock.now(),
        _dir: dir,
    }
}

fn session(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());
    let live = rt
        .block_on(sessions::check(&f.db, f.tenant, f.session, f.user, f.now))
        .expect("check");
    assert!(live.is_ok(), "the fixture session must be live");

    let mut group = c.benchmark_group("session");
    configure(&mut group);
    group.bench_function("check_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            sessions::check(&f.db, f.tenant, f.session, f.user, f.now)
                .await
                .expect("check")
                .expect("live")
        });
    });
    // The embedded-mode cache: after the first fill every check is a
    // hash-map hit (the liveness generation does not move and `now` stays
    // inside the cross-process TTL).
    let cache = SessionCache::for_backend(BackendKind::Sqlite);
    group.bench_function("check_cached", |b| {
        b.to_async(&rt).iter(|| async {
            cache
                .check(&f.db, f.tenant, f.session, f.user, f.now)
                .await
                .expect("check")
                .expect("live")
        });
    });
    // At most one entry (none when a filter skipped this bench).
    assert!(cache.len() <= 1, "the cached bench must hit one entry");
    rt.block_on(f.db.close());
    // Cluster mode: the database read, and the cache whose every check
    // costs one Redis GET (the cluster-wide liveness generation).
    if let Some((f, cache, mut admin, name)) = rt.block_on(pg_redis_fixture()) {
        group.bench_function("check_postgres", |b| {
            b.to_async(&rt).iter(|| async {
                sessions::check(&f.db, f.tenant, f.session, f.user, f.now)
                    .await
                    .expect("check")
                    .expect("live")
            });
        });
        group.bench_function("check_cached_postgres_redis", |b| {
            b.to_async(&rt).iter(|| async {
                cache
                    .check(&f.db, f.tenant, f.session, f.user, f.now)
                    .await
                    .expect("check")
                    .expect("live")
            });
        });
        assert!(cache.len() <= 1, "the cached bench must hit one entry");
        rt.block_on(async {
            f.db.close().await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .expect("drop database");
        });
    }
    group.finish();
}

fn rbac_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("rbac");
    configure(&mut group);
    group.bench_function("permission_check", |b| {
        b.iter(|| {
            let role = rbac::builtin_role(black_box("editor")).expect("built-in role");
            role.contains(black_box(&"records:write"))
        });
    });
    group.finish();
}

fn seal_bench(c: &mut Criterion) {
    let key = [0x42u8; 32];
    let aad = b"stockade:records:data:0190f3a2-0000-7000-8000-000000000000";
    let plaintext = vec![0xabu8; 2048];
    let sealed = seal::seal(&key, aad, &plaintext).expect("seal");

    let mut group = c.benchmark_group("seal");
    configure(&mut group);
    group.throughput(Throughput::Bytes(2048));
    group.bench_function("seal_2kib", |b| {
        b.iter(|| seal::seal(&key, black_box(aad), black_box(&plaintext)).expect("seal"));
    });
    group.bench_function("open_2kib", |b| {
        b.iter(|| seal::open(&key, black_box(aad), black_box(&sealed)).expect("open"));
    });
    group.finish();
}

/// The master key the fixture's tenant keys are wrapped under.
fn bench_master() -> MasterKey {
    MasterKey::single(1, [7u8; 32])
}

/// A record of about 2 KiB through the one record cipher (SPEC §2.9):
/// JSON encoding, AES-256-GCM under the tenant's data key, associated data
/// binding tenant, table, column and row.
fn record_cipher_bench(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());
    let keys = rt.block_on(async {
        let mut tx = f.db.tenant_tx(f.tenant).await.expect("tenant tx");
        let keys = envelope::load(&mut tx, &bench_master(), &SystemClock)
            .await
            .expect("tenant keys");
        tx.commit().await.expect("commit");
        keys
    });
    let doc = StoredDocument {
        key: Some("INV-0001".to_owned()),
        data: serde_json::json!({ "title": "Invoice", "notes": "x".repeat(2000) }),
    };
    let plain_len = serde_json::to_vec(&doc).expect("json").len();
    assert!((2048..2200).contains(&plain_len), "{plain_len}");
    let id = uuid::Uuid::now_v7();

    let mut group = c.benchmark_group("records");
    configure(&mut group);
    group.throughput(Throughput::Bytes(2048));
    group.bench_function("seal_open_document_2kib", |b| {
        b.iter(|| {
            let (body, _) =
                cipher::seal_document(&keys, black_box("invoices"), id, black_box(&doc))
                    .expect("seal");
            cipher::open_document(&keys, "invoices", id, black_box(&body)).expect("open")
        });
    });
    group.finish();
    rt.block_on(f.db.close());
}

fn audit_bench(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());
    let clock = SystemClock;

    let mut group = c.benchmark_group("audit");
    configure(&mut group);
    group.bench_function("append_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            let mut tx = f.db.tenant_tx(f.tenant).await.expect("tenant tx");
            audit::append(
                &mut tx,
                &clock,
                NewEvent::new(
                    Actor::User {
                        id: f.user,
                        impersonator: None,
                    },
                    "records.record.updated",
                )
                .target(Target::new("record", f.session))
                .details(serde_json::json!({ "fields": ["title"] })),
            )
            .await
            .expect("append");
            tx.commit().await.expect("commit");
        });
    });
    group.finish();
    rt.block_on(f.db.close());
}

/// A recognisable event, as the records API writes them.
fn bench_event(user: UserId, i: u64) -> NewEvent {
    NewEvent::new(
        Actor::User {
            id: user,
            impersonator: None,
        },
        "records.record.updated",
    )
    .target(Target::new("record", i))
    .details(serde_json::json!({ "fields": ["title"] }))
}

/// Appends `n` events to the bench tenant in transactions of 1,000.
async fn fill(db: &Db, tenant: TenantId, user: UserId, n: u64) {
    let clock = ManualClock::new(t0());
    let mut i = 0;
    while i < n {
        let batch: Vec<NewEvent> = (i..n.min(i + 1000)).map(|j| bench_event(user, j)).collect();
        i += batch.len() as u64;
        let mut tx = db.tenant_tx(tenant).await.expect("tenant tx");
        audit::append_many(&mut tx, &clock, batch)
            .await
            .expect("append");
        tx.commit().await.expect("commit");
    }
}

/// `tenant_tx` + `audit::append_many` of 100 events + commit: one head
/// update and signature, one multi-row INSERT. Reported as events/s.
fn bench_append_batch(
    c: &mut Criterion,
    rt: &Runtime,
    db: &Db,
    tenant: TenantId,
    user: UserId,
    name: &str,
) {
    const BATCH: u64 = 100;
    let clock = SystemClock;
    let mut group = c.benchmark_group("audit");
    configure(&mut group);
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let batch: Vec<NewEvent> = (0..BATCH).map(|i| bench_event(user, i)).collect();
            let mut tx = db.tenant_tx(tenant).await.expect("tenant tx");
            audit::append_many(&mut tx, &clock, batch)
                .await
                .expect("append");
            tx.commit().await.expect("commit");
        });
    });
    group.finish();
}

/// `verify_tenant` over a chain of `events` (+ the tenant's own first
/// events): paged reads overlapped with hashing. Reported as events/s.
fn bench_verify(
    c: &mut Criterion,
    rt: &Runtime,
    db: &Db,
    tenant: TenantId,
    events: u64,
    name: &str,
) {
    let mut group = c.benchmark_group("audit");
    configure(&mut group);
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let r = audit::verify_tenant(db, tenant).await.expect("verify");
            assert!(r.ok && r.events_checked > events);
        });
    });
    group.finish();
}

fn audit_batch_sqlite_bench(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());
    bench_append_batch(c, &rt, &f.db, f.tenant, f.user, "append_batch_100_sqlite");
    rt.block_on(f.db.close());
}

/// `verify_tenant` over 10,000 and 100,000 events on SQLite.
fn audit_verify_bench(c: &mut Criterion) {
    let rt = runtime();
    for (events, name) in [
        (10_000, "verify_10k_sqlite"),
        (100_000, "verify_100k_sqlite"),
    ] {
        let f = rt.block_on(fixture());
        rt.block_on(fill(&f.db, f.tenant, f.user, events));
        bench_verify(c, &rt, &f.db, f.tenant, events, name);
        rt.block_on(f.db.close());
    }
}

/// A fresh migrated PostgreSQL database (`STOCKADE_BENCH_PG_URL`, default
/// the local server's `postgres` database as admin) with the bench tenant
/// and user; `None`, and the PostgreSQL benches skipped, when no server
/// answers.
async fn pg_fixture() -> Option<(Db, TenantId, UserId, String, String)> {
    use sqlx::Connection;
    let admin = std::env::var("STOCKADE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping the PostgreSQL benches: {admin} not reachable: {e}");
            return None;
        }
    };
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (db, _) = common::pg_serving_db(&admin, &name).await;
    db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
    let clock = ManualClock::new(t0());
    let tenant = common::bench_tenant(&db, &clock, &bench_master()).await;
    let (user, tx) = common::bench_editor(&db, &clock, &tenant).await;
    tx.commit().await.expect("commit");
    Some((db, tenant.id, user.id, admin, name))
}

async fn drop_pg(db: Db, admin: &str, name: &str) {
    use sqlx::Connection;
    db.close().await;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// The same append and verify benches on PostgreSQL (skipped without one).
fn audit_postgres_bench(c: &mut Criterion) {
    let rt = runtime();
    let Some((db, tenant, user, admin, name)) = rt.block_on(pg_fixture()) else {
        return;
    };
    bench_append_batch(c, &rt, &db, tenant, user, "append_batch_100_postgres");
    rt.block_on(drop_pg(db, &admin, &name));
    let Some((db, tenant, user, admin, name)) = rt.block_on(pg_fixture()) else {
        return;
    };
    rt.block_on(fill(&db, tenant, user, 100_000));
    bench_verify(c, &rt, &db, tenant, 100_000, "verify_100k_postgres");
    rt.block_on(drop_pg(db, &admin, &name));
}

fn refresh(c: &mut Criterion) {
    let tenant = TenantId::new();
    let mut group = c.benchmark_group("refresh");
    configure(&mut group);
    group.bench_function("token_hash", |b| {
        b.iter(|| {
            RefreshToken::generate(black_box(tenant))
                .expect("generate")
                .hash()
        });
    });
    group.finish();
}

fn password(c: &mut Criterion) {
    let rt = runtime();
    let hasher = Hasher::new().expect("hasher");

    let mut group = c.benchmark_group("password");
    configure(&mut group);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("argon2id_hash", |b| {
        b.to_async(&rt).iter(|| async {
            hasher
                .hash(SecretString::from("correct horse battery staple"))
                .await
                .expect("hash")
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    token,
    session,
    rbac_check,
    seal_bench,
    record_cipher_bench,
    audit_bench,
    audit_batch_sqlite_bench,
    audit_verify_bench,
    audit_postgres_bench,
    refresh,
    password
);
criterion_main!(benches);
