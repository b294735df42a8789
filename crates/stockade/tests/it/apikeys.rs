//! API keys end to end (SPEC §2.8, issue #7), on SQLite and PostgreSQL:
//! format and show-once, bad input refused, keyed hashes a database dump
//! cannot use, rotation with grace; and the key fixtures (`create_key`,
//! `get`, `settings_from`, ...) the other `apikeys_*` files use. What
//! refuses a key is `apikeys_refusals.rs`, the cache `apikeys_cache.rs`,
//! the properties `apikeys_properties.rs`; this file must not duplicate
//! their tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{audit_actions, server, signup};
use crate::roles::{call, member_with_id as member};
use crate::testkit::{Backend, TestServer};

pub const XFF: &str = "x-forwarded-for";

/// Creates a key; returns (key, id).
pub async fn create_key(s: &TestServer, access: &str, scopes: &[&str]) -> (String, String) {
    let (status, body) = call(
        s,
        Method::POST,
        "/v1/api-keys",
        access,
        Some(json!({"name": "ci deploy", "scopes": scopes})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["key"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

/// GET `path` with `bearer`: the status.
pub async fn get(s: &TestServer, path: &str, bearer: &str) -> StatusCode {
    call(s, Method::GET, path, bearer, None).await.0
}

/// The details of every `action` event of tenant `slug`, in order.
pub async fn audit_details(s: &TestServer, slug: &str, action: &str) -> Vec<Value> {
    s.state.api_keys.denials.flush().await;
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

/// GET /v1/tenant/settings with `key`, from client address `ip` (through
/// the trusted proxy header).
pub async fn settings_from(
    s: &TestServer,
    ip: &str,
    key: String,
) -> reqwest::Result<reqwest::Response> {
    s.client
        .get(s.url("/v1/tenant/settings"))
        .bearer_auth(key)
        .header(XFF, ip)
        .send()
        .await
}

pub async fn code(res: (StatusCode, Value)) -> (StatusCode, String) {
    (res.0, res.1["code"].as_str().unwrap_or_default().to_owned())
}

async fn create_list_use_and_revoke(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    // stk_test_<16 hex>_<43 base64url>: 256-bit secret.
    assert!(key.starts_with("stk_test_"), "{key}");
    assert_eq!(key.len(), 69);
    let public_id = &key[9..25];
    assert!(public_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let secret = &key[26..];
    // Listed without its secret.
    let (status, list) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains(public_id));
    assert_eq!(list[0]["prefix"], format!("stk_test_{public_id}"));
    assert_eq!(list[0]["scopes"], json!(["settings:manage"]));
    assert!(list[0].get("hash").is_none());
    assert!(list[0]["last_used_at"].is_null());
    // In scope: 200; out of scope: 403 naming the permission.
    assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    let (status, body) = call(&s, Method::GET, "/v1/members", &key, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "rbac.forbidden");
    // Last use recorded with time and address.
    let (_, list) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    assert_eq!(list[0]["last_used_ip"], "127.0.0.1");
    assert!(list[0]["last_used_at"].is_string());
    // Revoked: refused on the next request.
    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/api-keys/{id}"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, c) = code(call(&s, Method::GET, "/v1/tenant/settings", &key, None).await).await;
    assert_eq!(
        (status, c.as_str()),
        (StatusCode::UNAUTHORIZED, "auth.invalid_api_key")
    );
    // Revoking again changes nothing; an unknown id is 404.
    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/api-keys/{id}"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for bad in ["00000000-0000-0000-0000-000000000000", "nope"] {
        let (status, c) = code(
            call(
                &s,
                Method::DELETE,
                &format!("/v1/api-keys/{bad}"),
                &owner.access,
                None,
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, c.as_str()),
            (StatusCode::NOT_FOUND, "api_keys.not_found")
        );
    }
    s.state.api_keys.denials.flush().await;
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("api_keys.key."))
            .count(),
        4,
        "{actions:?}"
    );
    let out = audit_details(&s, "acme", "api_keys.key.denied").await;
    let mut reasons: Vec<&str> = out.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["out_of_scope", "revoked"]);
    let scope = out.iter().find(|d| d["reason"] == "out_of_scope").unwrap();
    assert_eq!(scope["permission"], "members:manage");
    // Never the secret in the log.
    let created = audit_details(&s, "acme", "api_keys.key.created").await;
    assert!(!created[0].to_string().contains(secret));
    assert_eq!(created[0]["prefix"], format!("stk_test_{public_id}"));
    s.stop().await;
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    for (body, status, want) in [
        (
            json!({"name": "x", "scopes": ["records:delete"]}),
            400,
            "api_keys.invalid_scope",
        ),
        (
            json!({"name": "x", "scopes": []}),
            400,
            "api_keys.invalid_scope",
        ),
        (
            json!({"name": "x", "scopes": ["api_keys:manage"]}),
            400,
            "api_keys.invalid_scope",
        ),
        (
            json!({"name": " ", "scopes": ["records:read"]}),
            400,
            "api_keys.invalid_name",
        ),
        (
            json!({"name": "x", "scopes": ["records:read"], "expires_in_days": 0}),
            400,
            "api_keys.invalid_expiry",
        ),
        (
            json!({"name": "x", "scopes": ["records:read"], "expires_in_days": 3651}),
            400,
            "api_keys.invalid_expiry",
        ),
        (
            json!({"name": "x", "scopes": ["records:read"], "tenant_id": "x"}),
            400,
            "request.invalid_body",
        ),
    ] {
        let (st, c) = code(
            call(
                &s,
                Method::POST,
                "/v1/api-keys",
                &owner.access,
                Some(body.clone()),
            )
            .await,
        )
        .await;
        assert_eq!((st.as_u16(), c.as_str()), (status, want), "{body}");
    }
    let (_, list) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    assert_eq!(list, json!([]));
    // A viewer lacks api_keys:manage; a custom role cannot hand out more
    // than it holds.
    let (viewer, _) = member(&s, "acme", "v@acme.test", "viewer").await;
    let (st, c) = code(call(&s, Method::GET, "/v1/api-keys", &viewer.access, None).await).await;
    assert_eq!((st, c.as_str()), (StatusCode::FORBIDDEN, "rbac.forbidden"));
    let (st, _) = call(&s, Method::POST, "/v1/roles", &owner.access,
        Some(json!({"name": "integrator", "permissions": ["api_keys:manage", "records:read:orders"]}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (integrator, _) = member(&s, "acme", "i@acme.test", "integrator").await;
    for scopes in [json!(["records:read"]), json!(["settings:manage"])] {
        let (st, c) = code(
            call(
                &s,
                Method::POST,
                "/v1/api-keys",
                &integrator.access,
                Some(json!({"name": "x", "scopes": scopes})),
            )
            .await,
        )
        .await;
        assert_eq!((st, c.as_str()), (StatusCode::FORBIDDEN, "rbac.escalation"));
    }
    create_key(&s, &integrator.access, &["records:read:orders"]).await;
    s.stop().await;
}

async fn a_database_dump_cannot_authenticate(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let (public_id, hash, scopes): (String, Vec<u8>, String) = tx
        .fetch_one(
            "SELECT public_id, hash, scopes FROM api_keys WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    drop(tx);
    let secret = stockade::apikeys::parse(&key).unwrap();
    // The stored hash is keyed: not a plain digest of the key or secret.
    use sha2::Digest;
    assert_eq!(hash.len(), 32);
    assert_ne!(hash, sha2::Sha256::digest(key.as_bytes()).to_vec());
    assert!(
        !hash
            .windows(8)
            .any(|w| key.as_bytes().windows(8).any(|k| k == w))
    );
    assert_eq!(scopes, "[\"settings:manage\"]");
    // Everything in the row, tried as the secret, fails.
    use base64::Engine;
    let forged = format!(
        "stk_test_{public_id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash)
    );
    assert!(
        stockade::apikeys::parse(&forged).is_ok(),
        "well-formed forgery"
    );
    assert_eq!(
        get(&s, "/v1/tenant/settings", &forged).await,
        StatusCode::UNAUTHORIZED
    );
    // Verification needs the server's HMAC key (sealed under the master key).
    let hk = stockade::apikeys::hmac_key(&s.state).await.unwrap();
    assert!(secret.verify(hk, &hash));
    assert!(!secret.verify(&[0u8; 32], &hash));
    assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    s.stop().await;
}

async fn rotation_keeps_the_old_key_for_the_grace_period(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (old, id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let rotate = |id: String, body: Option<Value>| {
        let s = &s;
        let access = owner.access.clone();
        async move {
            call(
                s,
                Method::POST,
                &format!("/v1/api-keys/{id}/rotate"),
                &access,
                body,
            )
            .await
        }
    };
    for grace in [-1, 7 * 86_400 + 1] {
        let (st, c) = code(rotate(id.clone(), Some(json!({"grace_seconds": grace}))).await).await;
        assert_eq!(
            (st, c.as_str()),
            (StatusCode::BAD_REQUEST, "api_keys.invalid_grace")
        );
    }
    let (st, body) = rotate(id.clone(), Some(json!({"grace_seconds": 60}))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let new = body["key"].as_str().unwrap().to_owned();
    let new_id = body["id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(body["scopes"], json!(["settings:manage"]));
    assert_eq!(get(&s, "/v1/tenant/settings", &old).await, StatusCode::OK);
    assert_eq!(get(&s, "/v1/tenant/settings", &new).await, StatusCode::OK);
    // A rotated key cannot be rotated again.
    let (st, c) = code(rotate(id.clone(), None).await).await;
    assert_eq!(
        (st, c.as_str()),
        (StatusCode::CONFLICT, "api_keys.not_rotatable")
    );
    s.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(
        get(&s, "/v1/tenant/settings", &old).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&s, "/v1/tenant/settings", &new).await, StatusCode::OK);
    // Default grace 0: the old key stops at once (empty body accepted).
    let (st, body) = rotate(new_id, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let newest = body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&s, "/v1/tenant/settings", &new).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&s, "/v1/tenant/settings", &newest).await,
        StatusCode::OK
    );
    let rotated = audit_details(&s, "acme", "api_keys.key.rotated").await;
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[0]["grace_seconds"], 60);
    assert!(!rotated[0].to_string().contains(&new[26..]));
    s.stop().await;
}

crate::both_servers!(
    create_list_use_and_revoke,
    bad_input_is_refused_and_changes_nothing,
    a_database_dump_cannot_authenticate,
    rotation_keeps_the_old_key_for_the_grace_period,
);
