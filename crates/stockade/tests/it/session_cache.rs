//! The session and API-key caches in cluster mode (issue #8): two instances
//! on one PostgreSQL database share a liveness generation in Redis, so each
//! may answer session and API-key checks from memory and still see the
//! other's revocations on the very next request. Needs PostgreSQL and Redis
//! (both required under `CI=true`).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{Login, me, server, signup};
use crate::roles::{call, member, member_with_id};
use crate::testkit::{Backend, TestServer};

/// The Redis the tests use; override with STOCKADE_TEST_REDIS_URL.
pub fn redis_url() -> String {
    std::env::var("STOCKADE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

const UNREACHABLE_REDIS: &str = "redis://127.0.0.1:1";

pub async fn redis_up() -> bool {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return false;
    };
    match client.get_multiplexed_async_connection().await {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("Redis is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipping: Redis not reachable: {e}");
            false
        }
    }
}

const ROOT: &str = "root@platform.test";

/// Instance A and instance B on one fresh PostgreSQL database, both with
/// `redis` as their Redis URL.
async fn pair(redis: &str) -> Option<(TestServer, TestServer)> {
    if redis != UNREACHABLE_REDIS && !redis_up().await {
        return None;
    }
    let env = [
        ("STOCKADE_REDIS_URL", redis),
        ("STOCKADE_PLATFORM_OWNERS", ROOT),
    ];
    let a = server(Backend::Postgres, &env).await?;
    let b = TestServer::start_beside(&a, &env).await;
    Some((a, b))
}

/// Requests on `s` until one is answered from its cache (at most a few:
/// the first seeds the Redis counter, the next fills the entry).
async fn warm(s: &TestServer, who: &Login) {
    let before = s.state.session_cache.hits();
    for _ in 0..4 {
        assert_eq!(me(s, &who.access).await.status(), StatusCode::OK);
    }
    assert!(
        s.state.session_cache.hits() > before,
        "never served from the cache"
    );
}

async fn b_serves_a_session_from_its_cache() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    assert_eq!(b.state.session_cache.hits(), 0);
    for _ in 0..10 {
        assert_eq!(me(&b, &pat.access).await.status(), StatusCode::OK);
    }
    // At most two misses: seeding the counter, filling the entry.
    assert!(
        b.state.session_cache.hits() >= 8,
        "{}",
        b.state.session_cache.hits()
    );
    assert_eq!(a.state.session_cache.hits(), 0);
    // The counter is per database.
    let key = b.state.session_cache.cluster().unwrap().key().to_owned();
    let name = b.db.postgres_database_name().unwrap();
    assert_eq!(key, format!("stockade:liveness:{name}"));
    assert_eq!(key, a.state.session_cache.cluster().unwrap().key());
    b.stop().await;
}

async fn logout_on_a_is_refused_on_b_at_once() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    warm(&b, &pat).await;
    let (status, _) = call(&a, Method::POST, "/v1/auth/logout", &pat.access, None).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(me(&b, &pat.access).await.status(), StatusCode::UNAUTHORIZED);
    b.stop().await;
}

async fn deactivation_on_a_is_refused_on_b_at_once() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    let (sam, sam_id) = member_with_id(&a, "acme", "sam@acme.test", "editor").await;
    warm(&b, &sam).await;
    let (status, body) = call(
        &a,
        Method::PATCH,
        &format!("/v1/members/{sam_id}"),
        &pat.access,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(me(&b, &sam.access).await.status(), StatusCode::UNAUTHORIZED);
    b.stop().await;
}

async fn suspension_on_a_is_refused_on_b_at_once() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let root = signup(&a, "root-ops", ROOT).await;
    let _root_totp = crate::mfa::owner_factor(&a, &root.access).await;
    // That moved A's clock (a later TOTP step); B, another instance of the
    // same cluster, shares the time.
    {
        use stockade::clock::Clock;
        b.clock.set(a.clock.now());
    }
    let pat = signup(&a, "acme", "pat@acme.test").await;
    let acme = stockade::tenancy::find_by_slug(&a.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    warm(&b, &pat).await;
    let (status, body) = call(
        &a,
        Method::POST,
        &format!("/v1/platform/tenants/{acme}/suspend"),
        &root.access,
        Some(json!({"confirm": true, "reason": "support ticket #42"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = me(&b, &pat.access).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "tenancy.suspended");
    b.stop().await;
}

async fn role_change_on_a_applies_on_b_at_once() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    let (status, _) = call(
        &a,
        Method::POST,
        "/v1/roles",
        &pat.access,
        Some(json!({"name": "manager", "permissions": ["records:read", "roles:manage"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let manager = member(&a, "acme", "manager@acme.test", "manager").await;
    warm(&b, &manager).await;
    let (status, _) = call(
        &a,
        Method::PATCH,
        "/v1/roles/manager",
        &pat.access,
        Some(json!({"permissions": ["records:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, p) = call(
        &b,
        Method::POST,
        "/v1/roles",
        &manager.access,
        Some(json!({"name": "reader", "permissions": ["records:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["code"], "rbac.forbidden");
    b.stop().await;
}

async fn unreachable_redis_bypasses_the_cache() {
    let Some((a, b)) = pair(UNREACHABLE_REDIS).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    for _ in 0..5 {
        assert_eq!(me(&b, &pat.access).await.status(), StatusCode::OK);
    }
    assert_eq!(b.state.session_cache.hits(), 0);
    assert!(b.state.session_cache.is_empty());
    // A's INCR fails (logged); B reads the database, so it sees it anyway.
    let (status, _) = call(&a, Method::POST, "/v1/auth/logout", &pat.access, None).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(me(&b, &pat.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.state.session_cache.hits(), 0);
    assert_eq!(b.state.session_cache.hits(), 0);
    b.stop().await;
}

/// A cluster generation on a fresh key set to `value`, and a raw Redis
/// connection to bump it (and delete the key after the test).
async fn generation_at(
    value: i64,
) -> (
    std::sync::Arc<stockade::cache::cluster::ClusterGeneration>,
    redis::aio::MultiplexedConnection,
) {
    let database = format!("rounds-{}", uuid::Uuid::now_v7());
    let generation = stockade::cache::cluster::ClusterGeneration::connect(&redis_url(), &database)
        .expect("redis url");
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("SET")
        .arg(generation.key())
        .arg(value)
        .query_async(&mut raw)
        .await
        .expect("SET");
    (generation, raw)
}

/// Concurrent readers share `GET`s, but a reader is never answered by one
/// sent before it asked: with readers hammering (so a round is nearly always
/// in flight), every `INCR` that completed before a read is in its answer.
async fn shared_reads_are_never_older_than_the_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use stockade::cache::cluster::SEED_FLOOR;

    if !redis_up().await {
        return;
    }
    let (generation, mut raw) = generation_at(SEED_FLOOR + 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (generation, stop) = (generation.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = generation.current().await;
                }
            })
        })
        .collect();
    for _ in 0..300 {
        let bumped: i64 = redis::cmd("INCR")
            .arg(generation.key())
            .query_async(&mut raw)
            .await
            .expect("INCR");
        let seen = generation.current().await.expect("Redis answers");
        assert!(
            i64::try_from(seen).expect("fits") >= bumped,
            "a read answered {seen}, older than the INCR to {bumped} before it"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    let _: () = redis::cmd("DEL")
        .arg(generation.key())
        .query_async(&mut raw)
        .await
        .expect("DEL");
}

/// A reader that starts a round runs its `GET` itself; cancelled mid-`GET`
/// (its request dropped), it hands the round to a task, so the readers
/// after it are still answered from Redis (without the handoff they would
/// wait for a round that never comes and fall back to the database).
async fn a_cancelled_reader_hands_its_round_over() {
    use stockade::cache::cluster::SEED_FLOOR;

    if !redis_up().await {
        return;
    }
    let (generation, mut raw) = generation_at(SEED_FLOOR + 7).await;
    let expected = u64::try_from(SEED_FLOOR + 7).expect("fits");
    // Connected first: a cancelled first use would cancel the lazy connect.
    assert_eq!(generation.current().await, Some(expected));
    for _ in 0..20 {
        {
            let started = generation.current();
            tokio::pin!(started);
            // Polled once (it starts a round and waits on Redis), then
            // dropped at the end of this block.
            tokio::select! {
                biased;
                _ = &mut started => {}
                () = std::future::ready(()) => {}
            }
        }
        assert_eq!(generation.current().await, Some(expected));
    }
    let _: () = redis::cmd("DEL")
        .arg(generation.key())
        .query_async(&mut raw)
        .await
        .expect("DEL");
}

async fn api_key_revoked_on_a_is_refused_on_b_at_once() {
    let Some((a, b)) = pair(&redis_url()).await else {
        return;
    };
    let pat = signup(&a, "acme", "pat@acme.test").await;
    let (status, body) = call(
        &a,
        Method::POST,
        "/v1/api-keys",
        &pat.access,
        Some(json!({"name": "ci", "scopes": ["settings:manage"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap();
    let id = body["id"].as_str().unwrap();
    // Warm on B: at most two misses (seeding the counter, filling).
    for _ in 0..4 {
        let (status, _) = call(&b, Method::GET, "/v1/tenant/settings", key, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(b.state.api_keys.cache_hits() >= 2);
    // One Redis connection per process, shared by both caches.
    assert!(std::sync::Arc::ptr_eq(
        b.state.session_cache.cluster().unwrap(),
        b.state.api_keys.cluster().unwrap()
    ));
    let path = format!("/v1/api-keys/{id}");
    let (status, _) = call(&a, Method::DELETE, &path, &pat.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&b, Method::GET, "/v1/tenant/settings", key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "auth.invalid_api_key");
    b.stop().await;
}

mod postgres_redis {
    #[tokio::test]
    async fn a_cancelled_reader_hands_its_round_over() {
        super::a_cancelled_reader_hands_its_round_over().await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_reads_are_never_older_than_the_call() {
        super::shared_reads_are_never_older_than_the_call().await;
    }
    #[tokio::test]
    async fn b_serves_a_session_from_its_cache() {
        super::b_serves_a_session_from_its_cache().await;
    }
    #[tokio::test]
    async fn logout_on_a_is_refused_on_b_at_once() {
        super::logout_on_a_is_refused_on_b_at_once().await;
    }
    #[tokio::test]
    async fn deactivation_on_a_is_refused_on_b_at_once() {
        super::deactivation_on_a_is_refused_on_b_at_once().await;
    }
    #[tokio::test]
    async fn suspension_on_a_is_refused_on_b_at_once() {
        super::suspension_on_a_is_refused_on_b_at_once().await;
    }
    #[tokio::test]
    async fn role_change_on_a_applies_on_b_at_once() {
        super::role_change_on_a_applies_on_b_at_once().await;
    }
    #[tokio::test]
    async fn api_key_revoked_on_a_is_refused_on_b_at_once() {
        super::api_key_revoked_on_a_is_refused_on_b_at_once().await;
    }
    #[tokio::test]
    async fn unreachable_redis_bypasses_the_cache() {
        super::unreachable_redis_bypasses_the_cache().await;
    }
}
