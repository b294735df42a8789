//! What bounds and refuses an API key (SPEC §2.8, issue #7), on SQLite and
//! PostgreSQL: scopes bounded by the creator's current permissions at every
//! request, revocation / expiry / suspension / allowlist on the next
//! request, routes that need a person, rate limits per key and per address,
//! and the sampled denial audit. Its fixtures come from `apikeys.rs`; it
//! defines none of its own other files use.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;

use crate::apikeys::{XFF, audit_details, code, create_key, get, settings_from};
use crate::auth::{login_ok, server, signup};
use crate::roles::{call, member_with_id as member};
use crate::testkit::{Backend, raw_execute};

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
        &[
            "settings:manage",
            "members:manage",
            "records:read",
            "records:write",
        ],
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
    // Nor for inviting (issue #19 item 6), though the key holds
    // `members:manage`.
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/invitations",
        &key,
        Some(json!({"email": "new@acme.test", "role": "viewer"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "auth.step_up_required");
    // Actions taken with a key are audited as the key, for its creator.
    crate::records::created_id(&s, &key, "orders", json!({"data": {"total": 1}})).await;
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let (actor_type, actor_id, details): (String, String, String) = tx
        .fetch_one(
            "SELECT actor_type, actor_id, details FROM audit_events WHERE tenant_id = $1 \
             AND action = 'records.record.created'",
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

crate::both_servers!(
    the_creator_bounds_the_key_at_every_request,
    expiry_suspension_and_allowlist_apply_on_the_next_request,
    keys_are_refused_where_a_person_is_needed,
    rate_limits_per_key_and_per_address,
    denials_are_sampled_per_key_and_minute,
);
