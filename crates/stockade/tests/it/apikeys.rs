//! API keys end to end (SPEC §2.8, issue #7), on SQLite and PostgreSQL:
//! format and show-once, keyed hashes a database dump cannot use, scopes
//! bounded by the creator's current permissions, rotation with grace,
//! revocation / expiry / removal / suspension / allowlist on the next
//! request, rate limits, sampled denial audit; and the cache of successful
//! authentications (issue #8), which must keep all of that.

use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;

use crate::auth::{audit_actions, login_ok, server, signup};
use crate::roles::{call, member_with_id as member};
use crate::testkit::{Backend, TestServer, raw_execute};

const XFF: &str = "x-forwarded-for";

/// Creates a key; returns (key, id).
async fn create_key(s: &TestServer, access: &str, scopes: &[&str]) -> (String, String) {
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
async fn get(s: &TestServer, path: &str, bearer: &str) -> StatusCode {
    call(s, Method::GET, path, bearer, None).await.0
}

/// The details of every `action` event of tenant `slug`, in order.
async fn audit_details(s: &TestServer, slug: &str, action: &str) -> Vec<Value> {
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
async fn settings_from(
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

async fn code(res: (StatusCode, Value)) -> (StatusCode, String) {
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

async fn the_creator_bounds_the_key_at_every_request(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (admin, admin_id) = member(&s, "acme", "ad@acme.test", "admin").await;
    let (key, key_id) = create_key(&s, &admin.access, &["settings:manage", "members:manage"]).await;
    let (_, owner_key_id) = create_key(&s, &owner.access, &["settings:manage"]).await;
    assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::OK);
    // Demoting the creator narrows the key on the next request.
    let (st, _) = call(
        &s,
        Method::POST,
        "/v1/roles",
        &owner.access,
        Some(
            json!({"name": "settings_only", "permissions": ["settings:manage", "api_keys:manage"]}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{admin_id}"),
        &owner.access,
        Some(json!({"role": "settings_only"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::FORBIDDEN);
    // Editing the custom role narrows it too.
    let (st, _) = call(
        &s,
        Method::PATCH,
        "/v1/roles/settings_only",
        &owner.access,
        Some(json!({"permissions": ["api_keys:manage"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        get(&s, "/v1/tenant/settings", &key).await,
        StatusCode::FORBIDDEN
    );
    // Deactivated, then removed: the key stops; inviting the user back
    // later does not revive it.
    let (st, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{admin_id}"),
        &owner.access,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::OK);
    let (st, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{admin_id}"),
        &owner.access,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::UNAUTHORIZED);
    // Deactivation stops the key without revoking it (reactivation restores it).
    let revoked_at = |list: &Value, id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["revoked_at"]
            .clone()
    };
    let (_, list) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    assert!(revoked_at(&list, &key_id).is_null(), "{list}");
    s.clock.advance(chrono::Duration::seconds(7));
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/members/{admin_id}"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::UNAUTHORIZED);
    // Removal marks the member's keys revoked, at the removal's time; other
    // members' keys are untouched.
    let (_, list) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    let at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(revoked_at(&list, &key_id)).unwrap();
    assert_eq!(at, s.clock.now(), "{list}");
    assert!(revoked_at(&list, &owner_key_id).is_null(), "{list}");
    let removed = audit_details(&s, "acme", "tenancy.member.removed").await;
    assert_eq!(removed[0]["api_keys_revoked"], 1);
    s.clock.advance(chrono::Duration::minutes(5));
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    let admin_uuid: uuid::Uuid = admin_id.parse().unwrap();
    stockade::tenancy::add_member(
        &mut tx,
        s.clock.as_ref(),
        stockade::ids::UserId(admin_uuid),
        "admin",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::UNAUTHORIZED);
    let reasons: Vec<String> = audit_details(&s, "acme", "api_keys.key.denied")
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.contains(&"creator_inactive".to_owned()),
        "{reasons:?}"
    );
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

async fn expiry_suspension_and_allowlist_apply_on_the_next_request(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/api-keys",
        &owner.access,
        Some(json!({"name": "short", "scopes": ["settings:manage"], "expires_in_days": 1})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let short = body["key"].as_str().unwrap().to_owned();
    let (long, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let from = |ip, key| settings_from(&s, ip, key);
    assert_eq!(
        from("198.51.100.7", short.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    s.clock.advance(chrono::Duration::days(1));
    assert_eq!(
        from("198.51.100.7", short.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let reasons: Vec<Value> = audit_details(&s, "acme", "api_keys.key.denied").await;
    assert_eq!(reasons[0]["reason"], "expired");
    // IP allowlist.
    let owner = login_ok(&s, "owner@acme.test").await;
    let res = s
        .client
        .patch(s.url("/v1/tenant/settings"))
        .bearer_auth(&owner.access)
        .header(XFF, "198.51.100.7")
        .json(&json!({"ip_allowlist": ["198.51.100.0/24"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        from("198.51.100.9", long.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let res = from("203.0.113.5", long.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.ip_not_allowed"
    );
    // Suspension, here by SQL outside the server (as another process would
    // write it): a cached check sees it within the cross-process bound.
    // (Through the API it applies at once: `cached_keys_follow_their_tenant`.)
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    raw_execute(
        &s.db,
        "UPDATE tenants SET status = 'suspended' WHERE id = $1",
        tenant.id.0,
    )
    .await;
    s.clock.advance(stockade::cache::CROSS_PROCESS_TTL);
    let res = from("198.51.100.9", long.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    raw_execute(
        &s.db,
        "UPDATE tenants SET status = 'active' WHERE id = $1",
        tenant.id.0,
    )
    .await;
    s.clock.advance(stockade::cache::CROSS_PROCESS_TTL);
    assert_eq!(
        from("198.51.100.9", long.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    s.stop().await;
}

async fn keys_are_refused_where_a_person_is_needed(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, id) = create_key(
        &s,
        &owner.access,
        &["settings:manage", "members:manage", "records:read"],
    )
    .await;
    for (method, path) in [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/auth/sessions"),
        (Method::POST, "/v1/auth/logout"),
        (Method::POST, "/v1/auth/reauth"),
        (Method::GET, "/v1/platform/tenants"),
    ] {
        let (st, c) = code(call(&s, method.clone(), path, &key, Some(json!({}))).await).await;
        assert_eq!(
            (st, c.as_str()),
            (StatusCode::FORBIDDEN, "auth.api_key_not_allowed"),
            "{method} {path}"
        );
    }
    // Key management needs a person, even with the owner's permissions.
    let (st, c) = code(call(&s, Method::GET, "/v1/api-keys", &key, None).await).await;
    assert_eq!((st, c.as_str()), (StatusCode::FORBIDDEN, "rbac.forbidden"));
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/api-keys/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Step-up never passes for a key.
    let (st, c) = code(
        call(
            &s,
            Method::PATCH,
            "/v1/tenant/settings",
            &key,
            Some(json!({"session_idle_secs": 3600})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (st, c.as_str()),
        (StatusCode::FORBIDDEN, "auth.step_up_required")
    );
    // Actions taken with a key are audited as the key, for its creator.
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/invitations",
        &key,
        Some(json!({"email": "new@acme.test", "role": "viewer"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let (actor_type, actor_id, details): (String, String, String) = tx
        .fetch_one(
            "SELECT actor_type, actor_id, details FROM audit_events WHERE tenant_id = $1 \
             AND action = 'tenancy.invitation.created'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        (actor_type.as_str(), actor_id.as_str()),
        ("api_key", id.as_str())
    );
    let me: Value = crate::auth::me(&s, &owner.access)
        .await
        .json()
        .await
        .unwrap();
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["api_key_creator"], me["user"]["id"]);
    s.stop().await;
}

async fn rate_limits_per_key_and_per_address(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let (other, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    let (st, _) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"api_key_rate_per_minute": 3})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    for bad in [0, 100_001] {
        let (st, c) = code(
            call(
                &s,
                Method::PATCH,
                "/v1/tenant/settings",
                &owner.access,
                Some(json!({"api_key_rate_per_minute": bad})),
            )
            .await,
        )
        .await;
        assert_eq!(
            (st, c.as_str()),
            (StatusCode::BAD_REQUEST, "tenancy.invalid_settings")
        );
    }
    for _ in 0..3 {
        assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    }
    let res = s
        .client
        .get(s.url("/v1/tenant/settings"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "20");
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "api_keys.rate_limited"
    );
    // Per key: another key is unaffected; 20 s later one more is allowed.
    assert_eq!(get(&s, "/v1/tenant/settings", &other).await, StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(20));
    assert_eq!(get(&s, "/v1/tenant/settings", &key).await, StatusCode::OK);
    // Failed authentications per address: 10, then 429 before any lookup,
    // even for a good key; other addresses are unaffected.
    let from = |ip, k| settings_from(&s, ip, k);
    let bad = format!("{}AAAA{}", &other[..30], &other[34..]);
    for _ in 0..10 {
        assert_eq!(
            from("203.0.113.5", bad.clone()).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = from("203.0.113.5", other.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "auth.rate_limited"
    );
    assert_eq!(
        from("203.0.113.6", other.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    s.stop().await;
}

async fn denials_are_sampled_per_key_and_minute(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (key, _) = create_key(&s, &owner.access, &["settings:manage"]).await;
    for _ in 0..50 {
        assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::FORBIDDEN);
    }
    let events = audit_details(&s, "acme", "api_keys.key.denied").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["suppressed"], 0);
    s.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(get(&s, "/v1/members", &key).await, StatusCode::FORBIDDEN);
    let events = audit_details(&s, "acme", "api_keys.key.denied").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["suppressed"], 49);
    assert_eq!(events[1]["reason"], "out_of_scope");
    s.stop().await;
}

// ---- the cache of successful authentications (issue #8) ----

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
    create_list_use_and_revoke,
    bad_input_is_refused_and_changes_nothing,
    a_database_dump_cannot_authenticate,
    the_creator_bounds_the_key_at_every_request,
    rotation_keeps_the_old_key_for_the_grace_period,
    expiry_suspension_and_allowlist_apply_on_the_next_request,
    keys_are_refused_where_a_person_is_needed,
    rate_limits_per_key_and_per_address,
    denials_are_sampled_per_key_and_minute,
    cached_keys_stop_on_the_next_request,
    cached_keys_follow_their_tenant,
    a_cached_key_still_checks_its_secret_and_dates,
    a_remembered_owner_still_needs_the_key_row,
    last_use_is_written_once_a_minute_and_empties_no_cache,
);

// ---- properties ----

/// Permissions with an endpoint that needs exactly them.
const PROBES: &[(&str, &str)] = &[
    ("settings:manage", "/v1/tenant/settings"),
    ("members:manage", "/v1/members"),
];

#[derive(Debug, Clone)]
struct Case {
    /// The creator's role grants (always with api_keys:manage).
    creator: Vec<bool>,
    /// The key's scopes.
    scopes: Vec<bool>,
    /// The creator's grants after a change of role.
    later: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    let mask = || prop::collection::vec(any::<bool>(), PROBES.len());
    (mask(), mask(), mask()).prop_map(|(creator, scopes, later)| Case {
        creator,
        scopes,
        later,
    })
}

fn pick(mask: &[bool]) -> Vec<&'static str> {
    PROBES
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(p, _)| p.0)
        .collect()
}

/// A key answers exactly for scopes ∩ its creator's current grants; a key
/// with a scope its creator lacks is never made.
async fn scopes_are_bounded_by_the_creator(backend: Backend, c: Case) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let role = |name: &str, mask: &[bool]| {
        let mut perms = pick(mask);
        perms.push("api_keys:manage");
        json!({"name": name, "permissions": perms})
    };
    for (name, mask) in [("before", &c.creator), ("after", &c.later)] {
        let (st, _) = call(
            &s,
            Method::POST,
            "/v1/roles",
            &owner.access,
            Some(role(name, mask)),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (creator, creator_id) = member(&s, "acme", "c@acme.test", "before").await;
    let scopes = pick(&c.scopes);
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/api-keys",
        &creator.access,
        Some(json!({"name": "p", "scopes": scopes})),
    )
    .await;
    let allowed = !scopes.is_empty() && c.scopes.iter().zip(&c.creator).all(|(s, h)| !s || *h);
    if !allowed {
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::BAD_REQUEST,
            "{st} {body}"
        );
        s.stop().await;
        return;
    }
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let check = |held: Vec<bool>| {
        let s = &s;
        let key = key.clone();
        let c = c.clone();
        async move {
            for (i, (_, path)) in PROBES.iter().enumerate() {
                let want = c.scopes[i] && held[i];
                let got = get(s, path, &key).await;
                assert_eq!(got == StatusCode::OK, want, "{path}: {got} for {c:?}");
            }
        }
    };
    check(c.creator.clone()).await;
    let (st, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{creator_id}"),
        &owner.access,
        Some(json!({"role": "after"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    check(c.later.clone()).await;
    s.stop().await;
}

fn run(backend: Backend, c: Case) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scopes_are_bounded_by_the_creator(backend, c));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn key_permissions_are_scopes_within_the_creator_on_sqlite(c in case()) {
        run(Backend::Sqlite, c);
    }

    #[test]
    fn key_permissions_are_scopes_within_the_creator_on_postgres(c in case()) {
        run(Backend::Postgres, c);
    }

    /// Any string: the parser never panics, and what it accepts is the
    /// canonical spelling of a key.
    #[test]
    fn the_parser_accepts_only_canonical_keys(s in "stk_(live|test)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}|.{0,80}") {
        if let Ok(k) = stockade::apikeys::parse(&s) {
            use secrecy::ExposeSecret;
            let encoded = k.encode();
            prop_assert_eq!(encoded.expose_secret(), s.as_str());
        }
    }

    /// Changing any one character of a real key makes it fail to parse or
    /// fail to verify.
    #[test]
    fn one_changed_character_is_refused(i in 0usize..69, c in "[A-Za-z0-9_-]") {
        use secrecy::ExposeSecret;
        let key = stockade::apikeys::ApiKey::generate(stockade::apikeys::KeyEnv::Test).unwrap();
        let hk = [3u8; 32];
        let hash = key.hash(&hk);
        let text = key.encode().expose_secret().to_owned();
        let mut chars: Vec<char> = text.chars().collect();
        prop_assume!(chars[i].to_string() != c);
        chars[i] = c.chars().next().unwrap();
        let changed: String = chars.into_iter().collect();
        if let Ok(k) = stockade::apikeys::parse(&changed) {
            prop_assert!(!k.verify(&hk, &hash));
        }
    }
}
