//! The cache of successful API-key authentications (issue #8), on SQLite
//! and PostgreSQL (with Redis): a cached key still stops on the next request,
//! follows its tenant, needs its row, checks its secret and dates, and the
//! once-a-minute `last_used_at` write empties no cache. It proves that the
//! cache keeps every rule of `apikeys_refusals.rs`; it must not test the
//! uncached paths again.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;

use crate::apikeys::{XFF, audit_details, create_key, settings_from};
use crate::auth::{server, signup};
use crate::roles::{call, member_with_id as member};
use crate::testkit::{Backend, TestServer, raw_execute};

const ROOT: &str = "root@platform.test";

/// A server whose key checks are cached, with a platform owner and the
/// trusted proxy header: on PostgreSQL that needs Redis (`None` when it is
/// not reachable and CI does not require it).
async fn cached_server(backend: Backend) -> Option<TestServer> {
    let redis = crate::session_cache::redis_url();
    let mut env = vec![
        ("STOCKADE_PLATFORM_OWNERS", ROOT),
        ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    if backend == Backend::Postgres {
        if !crate::session_cache::redis_up().await {
            return None;
        }
        env.push(("STOCKADE_REDIS_URL", redis.as_str()));
    }
    server(backend, &env).await
}

/// Where the cached keys are used from.
const IP: &str = "198.51.100.9";

/// Uses `key` until a request is answered from the cache (at most a few: in
/// cluster mode the first seeds the Redis counter, the next fills).
async fn warm(s: &TestServer, key: &str) {
    let before = s.state.api_keys.cache_hits();
    for _ in 0..4 {
        let res = settings_from(s, IP, key.to_owned()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(
        s.state.api_keys.cache_hits() > before,
        "never served from the cache"
    );
}

async fn status_from(s: &TestServer, key: &str) -> StatusCode {
    settings_from(s, IP, key.to_owned()).await.unwrap().status()
}

/// `key` with one character of its secret changed (still well-formed).
fn wrong_secret(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

async fn cached_keys_stop_on_the_next_request(backend: Backend) {
    let Some(s) = cached_server(backend).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (admin, admin_id) = member(&s, "acme", "ad@acme.test", "admin").await;
    // Revoked.
    let (key, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    let path = format!("/v1/api-keys/{id}");
    let (st, _) = call(&s, Method::DELETE, &path, &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    // Rotated without grace (the default): the old key stops at once.
    let (key, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    let path = format!("/v1/api-keys/{id}/rotate");
    let (st, body) = call(&s, Method::POST, &path, &owner.access, None).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    let newer = body["key"].as_str().unwrap();
    assert_eq!(status_from(&s, newer).await, StatusCode::OK);
    // The creator demoted (the key loses the scope), deactivated, removed.
    let (key, _) = create_key(&s, &admin.access, &["settings:manage"]).await;
    let member_path = format!("/v1/members/{admin_id}");
    let patch = |body: Value| call(&s, Method::PATCH, &member_path, &owner.access, Some(body));
    warm(&s, &key).await;
    assert_eq!(patch(json!({"role": "editor"})).await.0, StatusCode::OK);
    assert_eq!(status_from(&s, &key).await, StatusCode::FORBIDDEN);
    assert_eq!(patch(json!({"role": "admin"})).await.0, StatusCode::OK);
    warm(&s, &key).await;
    assert_eq!(patch(json!({"active": false})).await.0, StatusCode::OK);
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(patch(json!({"active": true})).await.0, StatusCode::OK);
    warm(&s, &key).await;
    let (st, _) = call(&s, Method::DELETE, &member_path, &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    // The creator's custom role edited.
    let role =
        json!({"name": "settings_only", "permissions": ["settings:manage", "api_keys:manage"]});
    let (st, _) = call(&s, Method::POST, "/v1/roles", &owner.access, Some(role)).await;
    assert_eq!(st, StatusCode::CREATED);
    let (lee, _) = member(&s, "acme", "lee@acme.test", "settings_only").await;
    let (key, _) = create_key(&s, &lee.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    let narrower = json!({"permissions": ["api_keys:manage"]});
    let path = "/v1/roles/settings_only";
    let (st, _) = call(&s, Method::PATCH, path, &owner.access, Some(narrower)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(status_from(&s, &key).await, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn cached_keys_follow_their_tenant(backend: Backend) {
    let Some(s) = cached_server(backend).await else {
        return;
    };
    let root = signup(&s, "root-ops", ROOT).await;
    let _root_totp = crate::mfa::owner_factor(&s, &root.access).await;
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let settings = |body: Value| {
        s.client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&owner.access)
            .header(XFF, "198.51.100.7")
            .json(&body)
            .send()
    };
    // The per-key rate lowered: applies from the next request.
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    let res = settings(json!({"api_key_rate_per_minute": 1}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = settings_from(&s, IP, key.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "api_keys.rate_limited"
    );
    let res = settings(json!({"api_key_rate_per_minute": 600}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // An IP allowlist that leaves the key's address out.
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    let res = settings(json!({"ip_allowlist": ["198.51.100.7/32"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = settings_from(&s, IP, key.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.ip_not_allowed"
    );
    let res = settings(json!({"ip_allowlist": []})).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Suspended by the platform.
    warm(&s, &key).await;
    let acme = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    let (st, body) = call(
        &s,
        Method::POST,
        &format!("/v1/platform/tenants/{acme}/suspend"),
        &root.access,
        Some(json!({"confirm": true, "reason": "support ticket #42"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let res = settings_from(&s, IP, key.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    s.stop().await;
}

/// A key's tenant is remembered once found (a key never changes tenant), so
/// a refresh reads only the key's row; that row is still required: a key
/// whose rows are gone (removed outside the server, with no generation bump)
/// stops once its cached entry is older than the cross-process bound.
async fn a_remembered_owner_still_needs_the_key_row(backend: Backend) {
    let Some(s) = cached_server(backend).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    assert_eq!(s.state.api_keys.remembered_owners(), 1);
    // Past the bound, the refresh finds the owner in memory.
    s.clock.advance(stockade::cache::CROSS_PROCESS_TTL);
    assert_eq!(status_from(&s, &key).await, StatusCode::OK);
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    for sql in [
        "DELETE FROM api_keys WHERE tenant_id = $1",
        "DELETE FROM api_key_ids WHERE owner_tenant = $1",
    ] {
        assert_eq!(raw_execute(&s.db, sql, tenant.id.0).await, 1, "{sql}");
    }
    s.clock.advance(stockade::cache::CROSS_PROCESS_TTL);
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn a_cached_key_still_checks_its_secret_and_dates(backend: Backend) {
    let Some(s) = cached_server(backend).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    warm(&s, &key).await;
    // A wrong secret on a cached key: found in the cache, refused, audited
    // and counted against the address like any wrong secret.
    let bad = wrong_secret(&key);
    let hits = s.state.api_keys.cache_hits();
    let from = |ip, k| settings_from(&s, ip, k);
    for _ in 0..10 {
        let res = from("203.0.113.5", bad.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.state.api_keys.cache_hits(), hits + 10);
    let res = from("203.0.113.5", key.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "auth.rate_limited"
    );
    let denied = audit_details(&s, "acme", "api_keys.key.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["reason"], "bad_secret");
    assert_eq!(denied[0]["suppressed"], 0);
    // The end of a rotation's grace, between two hits: no write happens
    // then, the time check alone stops the key.
    let path = format!("/v1/api-keys/{id}/rotate");
    let grace = json!({"grace_seconds": 3});
    let (st, _) = call(&s, Method::POST, &path, &owner.access, Some(grace)).await;
    assert_eq!(st, StatusCode::CREATED);
    warm(&s, &key).await;
    s.clock.advance(chrono::Duration::seconds(3));
    let hits = s.state.api_keys.cache_hits();
    assert_eq!(status_from(&s, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.state.api_keys.cache_hits(), hits + 1);
    // Expiry likewise.
    let body = json!({"name": "short", "scopes": ["settings:manage"], "expires_in_days": 1});
    let (st, body) = call(&s, Method::POST, "/v1/api-keys", &owner.access, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED);
    let short = body["key"].as_str().unwrap().to_owned();
    s.clock
        .advance(chrono::Duration::days(1) - chrono::Duration::seconds(2));
    warm(&s, &short).await;
    s.clock.advance(chrono::Duration::seconds(2));
    let hits = s.state.api_keys.cache_hits();
    assert_eq!(status_from(&s, &short).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.state.api_keys.cache_hits(), hits + 1);
    let reasons: Vec<Value> = audit_details(&s, "acme", "api_keys.key.denied")
        .await
        .iter()
        .map(|d| d["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [json!("bad_secret"), json!("rotated"), json!("expired")]
    );
    s.stop().await;
}

/// The `last_used_at` of key `id`, as listed.
async fn last_used_at(
    s: &TestServer,
    access: &str,
    id: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, list) = call(s, Method::GET, "/v1/api-keys", access, None).await;
    let key = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    serde_json::from_value(key["last_used_at"].clone()).unwrap()
}

async fn last_use_is_written_once_a_minute_and_empties_no_cache(backend: Backend) {
    let Some(s) = cached_server(backend).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let last_used = || last_used_at(&s, &owner.access, &id);
    let generation = s.db.liveness_generation();
    let session_hits = s.state.session_cache.hits();
    warm(&s, &key).await;
    let first = s.clock.now();
    assert_eq!(last_used().await, Some(first));
    // The write is bookkeeping: no cache was emptied by it.
    assert_eq!(s.db.liveness_generation(), generation);
    assert_eq!(last_used().await, Some(first));
    assert!(s.state.session_cache.hits() > session_hits);
    // A cached entry still says "never used": no write per request anyway.
    s.clock.advance(chrono::Duration::seconds(2));
    let hits = s.state.api_keys.cache_hits();
    assert_eq!(status_from(&s, &key).await, StatusCode::OK);
    assert_eq!(s.state.api_keys.cache_hits(), hits + 1);
    assert_eq!(last_used().await, Some(first));
    // A minute later, the next use is recorded.
    s.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(status_from(&s, &key).await, StatusCode::OK);
    assert_eq!(last_used().await, Some(s.clock.now()));
    s.stop().await;
}

crate::both_servers!(
    cached_keys_stop_on_the_next_request,
    cached_keys_follow_their_tenant,
    a_cached_key_still_checks_its_secret_and_dates,
    a_remembered_owner_still_needs_the_key_row,
    last_use_is_written_once_a_minute_and_empties_no_cache,
);
